"""`talkrig generate --server`: what the CLI sends to a real motion server (reference clips travel as data,
CurveZMQ keys are used) and that the answer equals the in-process engine's. No ../shared needed."""

from __future__ import annotations

import numpy as np
import pytest
from motion_server_helpers import ServerProcess, speech_like_wav

from motion_server.cli import main
from rig_mapping import FaceMotion
from rig_mapping.formats import load_motion, save_motion


@pytest.fixture(scope="module")
def procedural_server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("server"), engine="procedural")
    yield server
    server.close()


@pytest.fixture
def clip(tmp_path):
    p = tmp_path / "line.wav"
    p.write_bytes(speech_like_wav(1.5, seed=4))
    return p


def test_procedural_server_gives_the_in_process_result(procedural_server, tmp_path, clip, capsys):
    """`talkrig generate --server` against `talkrig serve --engine procedural`: same file as in-process."""
    common = ["--style", "happy", "--transcript", "hello there", "--seed", "3", "-q"]
    local, remote = tmp_path / "local.npz", tmp_path / "remote.npz"
    assert main(["generate", str(clip), "--engine", "procedural", "--out", str(local), *common]) == 0
    rc = main(["generate", str(clip), "--server", procedural_server.address, "--out", str(remote), *common])
    assert rc == 0, capsys.readouterr().err + procedural_server.log()
    assert f"server {procedural_server.address}" in capsys.readouterr().out
    a, b = load_motion(local), load_motion(remote)
    assert a.n_frames == b.n_frames == 45
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.head, b.head)


def test_style_reference_file_is_sent_as_a_clip(procedural_server, tmp_path, clip, capsys):
    """--style FILE.csv means "take the style from this recording" with and without --server: the server
    must receive the clip itself (it may not see this machine's files), not a preset named by the path."""
    w = np.zeros((45, 52), np.float32)
    w[:, 17] = np.linspace(0.0, 0.6, 45)
    ref = save_motion(FaceMotion.from_arrays(w, fps=30), tmp_path / "ref.csv")
    args = ["--style", str(ref), "--transcript", "hello there", "-q"]
    assert main(["generate", str(clip), "--engine", "procedural", "--out", str(tmp_path / "l.npz"), *args]) == 2
    local_err = capsys.readouterr().err
    server = procedural_server
    assert main(["generate", str(clip), "--server", server.address, "--out", str(tmp_path / "r.npz"), *args]) == 2
    remote_err = capsys.readouterr().err
    # the procedural engine refuses reference clips; both paths must hit that refusal, not "unknown style"
    assert "cannot follow a reference clip" in local_err
    assert "cannot follow a reference clip" in remote_err and "engine_rejected" in remote_err


def test_curve_server_key(tmp_path, clip, capsys):
    """An encrypted server answers `generate --server-key server.key` with the in-process result; without
    the key the CLI fails within its timeout, naming the address and the key."""
    assert main(["keygen", str(tmp_path / "keys")]) == 0
    pub, sec = tmp_path / "keys" / "server.key", tmp_path / "keys" / "server.key_secret"
    from motion_server.client import load_server_key

    common = ["--seed", "2", "-q"]
    local = tmp_path / "local.npz"
    assert main(["generate", str(clip), "--engine", "energy", "--out", str(local), *common]) == 0
    server = ServerProcess(tmp_path, engine="energy", extra=["--curve-secret", str(sec)],
                           server_public_key=load_server_key(pub))
    try:
        remote = tmp_path / "remote.npz"
        rc = main(["generate", str(clip), "--server", server.address, "--server-key", str(pub),
                   "--out", str(remote), *common])
        assert rc == 0, capsys.readouterr().err + server.log()
        capsys.readouterr()
        rc = main(["generate", str(clip), "--server", server.address, "--timeout", "1.5",
                   "--out", str(tmp_path / "nokey.npz"), *common])
        err = capsys.readouterr().err
        assert rc == 2 and server.address in err and "public key" in err
    finally:
        server.close()
    a, b = load_motion(local), load_motion(remote)
    assert a.n_frames == b.n_frames and np.array_equal(a.weights, b.weights) and np.array_equal(a.head, b.head)
    assert not (tmp_path / "nokey.npz").exists()


def test_server_key_needs_server(tmp_path, clip, capsys):
    assert main(["generate", str(clip), "--server-key", "x" * 40, "--out", str(tmp_path / "o.npz")]) == 2
    assert "--server-key only applies with --server" in capsys.readouterr().err
