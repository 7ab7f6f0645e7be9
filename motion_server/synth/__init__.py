"""Synthetic training data: speech synthesis with phone timings (``speech``), sentences (``text``),
augmentation and the sharded corpus builder/reader (``corpus``); the motion targets come from
``motion_server.performer``. Training and evaluation read the corpus; generation never imports this
package. Kept import-light: submodules are imported where needed."""
