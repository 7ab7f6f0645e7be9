"""`list` answers with the engine's style presets, whichever key its info() uses for them; the log names
engine, model, device and address."""

from __future__ import annotations

from typing import Any

from motion_server_helpers import PacedEngine, ServerProcess

from motion_server.client import MotionClient


class PresetsEngine(PacedEngine):
    """Describes its styles the way the diffusion engine does: accepted forms in "styles", the preset
    names in "style_presets"."""

    def info(self) -> dict[str, Any]:
        return {**super().info(), "styles": ["<preset>", "predicted"], "style_presets": ["calm", "lively"]}


def test_list_reports_the_style_presets(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine="test_server_list:PresetsEngine")
    try:
        with MotionClient(s.bind, timeout_s=5) as c:
            lst = c.list()
        assert lst["styles"] == ["calm", "lively"]
        assert lst["info"]["styles"] == ["<preset>", "predicted"]
        # the log says what serves here: engine, model, device, address
        log = s.log()
        assert "engine paced-energy (model loudness envelope) on device cpu" in log
        assert f"listening on {s.bind}" in log
    finally:
        s.close()
