"""Synthetic training data: speech synthesis with phone timings (``speech``), augmentation, a procedural
performer (``performer``) and the sharded corpus builder/reader (``corpus``). Kept import-light: submodules
are imported where needed."""
