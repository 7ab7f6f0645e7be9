"""talkrig keygen: create a CurveZMQ key pair for a server reachable from other machines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keygen",
        help="create CurveZMQ keys so the server may listen on a network address",
        description="Writes NAME.key (public: give it to clients) and NAME.key_secret (private: pass it to "
        "`talkrig serve --curve-secret`). Never overwrites existing keys.",
    )
    p.add_argument("outdir", type=Path, help="directory for the key files")
    p.add_argument("--name", default="server", help="file name stem (default: server)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from motion_server.server.keys import CurveKeyError, create_keypair

    try:
        pub, sec = create_keypair(args.outdir, args.name)
    except CurveKeyError as e:
        print(f"talkrig keygen: {e}", file=sys.stderr)
        return 1
    print(f"public key (give to clients): {pub}")
    print(f"secret key (keep private):    {sec}")
    print(f"start the server with: talkrig serve --bind tcp://0.0.0.0:5557 --curve-secret {sec}")
    print(f"clients connect with:   MotionClient(ADDR, server_public_key=load_server_key({str(pub)!r}))")
    return 0
