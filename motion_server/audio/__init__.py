from .io import AudioError, audio_sha256, load_audio

__all__ = ["AudioError", "audio_sha256", "load_audio"]
