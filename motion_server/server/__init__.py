"""The ZeroMQ motion server: one engine, many clients. Protocol: motion_server.protocol / docs/protocol.md."""

from .config import DEFAULT_BIND, BindRefused, ServerConfig, check_binds, is_local_address
from .core import MotionServer
from .engines import load_engine
from .run import run_server

__all__ = [
    "DEFAULT_BIND", "BindRefused", "ServerConfig", "check_binds", "is_local_address", "MotionServer",
    "load_engine", "run_server",
]
