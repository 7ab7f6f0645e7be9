"""Evaluation: how good is the lip sync and motion, measured on a real face mesh.

- ``geometry``: drive the ICT face with ARKit weights; lip gap, mouth width, jaw drop in cm.
- ``metrics``: ground-truth, phone-timing and motion-sanity metrics (small pure functions).
- ``baselines``: the energy (loudness) engine and the recognised-phone procedural baseline.
- ``suites`` / ``phone_files``: the clips each suite scores; ``runner`` / ``report``: ``talkrig eval``.
- ``motion_stats``: head, blink, brow and jaw statistics in real people's terms (numpy only);
  ``reference_targets``: those statistics of the real references, shipped as ``references/motion_targets.json``;
  ``plot``: ``talkrig plot``'s picture of a motion against its audio and the references.
"""
