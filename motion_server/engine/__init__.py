"""Engines turn audio into a FaceMotion. The server, the CLI and the benchmarks only see this interface."""

from .base import Cancelled, CancelToken, Engine, GenerateOptions, ProgressFn
from .registry import ENGINE_NAMES, create_engine

__all__ = ["Cancelled", "CancelToken", "Engine", "GenerateOptions", "ProgressFn", "ENGINE_NAMES", "create_engine"]
