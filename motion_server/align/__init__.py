"""Phones from real speech with the English model shipped in the ``pocketsphinx`` wheel.

``align_transcript``: forced alignment when the words are known; ``recognise_phones``: a phone loop
when they are not. Both return ``motion_server.phones.Phone`` lists (ARPAbet, seconds) covering
the whole clip, ready for the procedural performer.
"""

from .decoder import AlignError
from .forced import align_transcript
from .recognise import recognise_phones

__all__ = ["AlignError", "align_transcript", "recognise_phones"]
