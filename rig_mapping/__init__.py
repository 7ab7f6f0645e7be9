"""TalkRig's Blender-independent core: ARKit channels, FaceMotion, file formats, rig mapping profiles.

numpy only: this package runs inside Blender's bundled Python and must never import torch or bpy.
"""

from .arkit import ARKIT_INDEX, ARKIT_NAMES, GROUPS, HEAD_CHANNELS, LR_PAIRS, NUM_CHANNELS
from .automap import AutoMapResult, automap
from .formats import FormatError, load_motion, save_motion
from .keyframes import MotionKeys, reduce_curve, reduce_curves, reduce_motion
from .motion import FaceMotion, MotionError
from .profile import MappedMotion, Profile, ProfileError, apply_profile, list_presets, load_profile

__all__ = [
    "ARKIT_INDEX", "ARKIT_NAMES", "GROUPS", "HEAD_CHANNELS", "LR_PAIRS", "NUM_CHANNELS",
    "FaceMotion", "MotionError",
]
__all__ += [
    "AutoMapResult", "automap",
    "FormatError", "load_motion", "save_motion",
    "MotionKeys", "reduce_curve", "reduce_curves", "reduce_motion",
    "MappedMotion", "Profile", "ProfileError", "apply_profile", "list_presets", "load_profile",
]
__version__ = "0.1.0"
