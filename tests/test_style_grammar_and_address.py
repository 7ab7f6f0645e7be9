"""One style grammar for every engine, and one default server address in every help text (two defects a
new user hit: `--style happy:2` failed with the default engine; `generate --help` named another port)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from motion_server.audio.io import load_audio
from motion_server.engine.base import GenerateOptions
from motion_server.engine.registry import create_engine
from motion_server.engine.styles import split_level

JFK = Path(__file__).resolve().parents[1] / "examples" / "jfk.flac"


def test_the_grammar_splits_levels_and_refuses_bad_ones():
    assert split_level("sad:3") == ("sad", 3) and split_level("Happy") == ("happy", None)
    assert split_level("predicted") == ("predicted", None)
    assert split_level("take.csv") == ("take.csv", None)
    with pytest.raises(ValueError, match="1 \\(subtle\\), 2 or 3"):
        split_level("happy:7")


@pytest.mark.parametrize("engine", ["diffusion", "procedural"])
def test_preset_levels_work_with_every_engine_and_grow_the_style(engine):
    audio = load_audio(JFK, sr=16000)[: 16000 * 4]
    eng = create_engine(engine)
    opts = GenerateOptions(transcript="And so my fellow Americans", seed=1)
    smiles = {}
    for level in (1, 3):
        m = eng.generate(audio, 16000, GenerateOptions(**{**opts.to_dict(), "style": f"happy:{level}"}))
        assert m.meta["style"] == f"happy:{level}"
        smiles[level] = float(np.mean(m.channel("mouthSmileLeft")))
    assert smiles[3] > smiles[1]
    plain = eng.generate(audio, 16000, GenerateOptions(**{**opts.to_dict(), "style": "happy"}))
    two = eng.generate(audio, 16000, GenerateOptions(**{**opts.to_dict(), "style": "happy:2"}))
    assert np.array_equal(plain.weights, two.weights)


def test_every_help_names_the_address_the_server_binds(capsys):
    from motion_server.cli import main
    from motion_server.client import DEFAULT_ADDRESS
    from motion_server.server.config import DEFAULT_BIND

    assert DEFAULT_BIND == DEFAULT_ADDRESS
    for cmd in ("generate", "animate", "serve", "plot"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        ports = set(re.findall(r"127\.0\.0\.1:(\d+)", out))
        assert ports == {DEFAULT_ADDRESS.rsplit(":", 1)[1]}, (cmd, ports)
