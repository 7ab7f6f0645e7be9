"""TalkRig motion server: audio features, engines (procedural, diffusion), training, evaluation, the ZeroMQ server."""

__version__ = "0.1.0"
