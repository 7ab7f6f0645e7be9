"""The add-on talks to an encrypted (CurveZMQ) motion server with the public key from its preferences, and
without the key it fails with a message that points at that preference."""

from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

import addon_utils  # noqa: E402
from motion_server_helpers import ServerProcess, speech_like_wav  # noqa: E402

from blender_addon.core import anim  # noqa: E402
from blender_addon.core.demo_head import build_demo_head  # noqa: E402
from motion_server.cli import main as talkrig  # noqa: E402
from motion_server.client import load_server_key  # noqa: E402

pytestmark = pytest.mark.blender


def test_public_key_preference_is_used(tmp_path):
    assert talkrig(["keygen", str(tmp_path / "keys")]) == 0
    pub, sec = tmp_path / "keys" / "server.key", tmp_path / "keys" / "server.key_secret"
    server = ServerProcess(tmp_path, engine="energy", extra=["--curve-secret", str(sec)],
                           server_public_key=load_server_key(pub))
    wav = tmp_path / "line.wav"
    wav.write_bytes(speech_like_wav(1.0))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    try:
        prefs = bpy.context.preferences.addons["blender_addon"].preferences
        prefs.server_address, prefs.timeout_s = server.address, 20
        head = build_demo_head()
        bpy.context.view_layer.objects.active = head.mesh
        s = bpy.context.scene.talkrig
        s.audio_source, s.audio_path = "FILE", str(wav)

        prefs.server_public_key = ""  # the encrypted server ignores a client without its key
        with pytest.raises(RuntimeError, match="Server public key"):
            bpy.ops.talkrig.server_check()
        assert not s.server_ok

        prefs.server_public_key = str(pub)
        assert bpy.ops.talkrig.server_check() == {"FINISHED"} and s.server_ok
        assert bpy.ops.talkrig.generate(synchronous=True) == {"FINISHED"}
        fcs = {fc.data_path for fc in anim.fcurves_of(head.mesh.data.shape_keys)}
        assert 'key_blocks["jawOpen"].value' in fcs
    finally:
        addon_utils.disable("blender_addon", default_set=True)
        server.close()
