"""TalkRig's Blender-independent core: ARKit channels, FaceMotion, file formats, rig mapping profiles.

numpy only: this package runs inside Blender's bundled Python and must never import torch or bpy.
"""

from .arkit import ARKIT_INDEX, ARKIT_NAMES, GROUPS, HEAD_CHANNELS, LR_PAIRS, NUM_CHANNELS
from .motion import FaceMotion, MotionError

__all__ = [
    "ARKIT_INDEX", "ARKIT_NAMES", "GROUPS", "HEAD_CHANNELS", "LR_PAIRS", "NUM_CHANNELS",
    "FaceMotion", "MotionError",
]
__version__ = "0.1.0"
