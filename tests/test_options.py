"""One table of generation options (motion_server.options): the CLI flags, the protocol's validation,
GenerateOptions, the engines' checks and the docs agree with it; blink rate 0 means no blinks; options
left unset take the checkpoint's sampling settings. (The Blender properties: tests/test_blender_panel.py.)"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from motion_server import protocol as P
from motion_server.cli import build_parser, main
from motion_server.engine.base import GenerateOptions
from motion_server.model import DEFAULT_CHECKPOINT
from motion_server.model.engine import DiffusionEngine
from motion_server.model.postprocess import blink_events
from motion_server.options import MAX_STEPS, OPTIONS, SAMPLER_NAMES
from motion_server.protocol import ErrorCode, ProtocolError
from rig_mapping.formats import load_motion

RANGED = [o for o in OPTIONS if o.range is not None]


def _generate_parser():
    import argparse

    root = build_parser()
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return root, sub.choices["generate"]


def test_generate_options_fields_and_defaults_are_the_tables():
    fields = {f.name: f.default for f in dataclasses.fields(GenerateOptions)
              if f.name not in ("style_reference", "phones")}
    assert fields == {o.name: o.default for o in OPTIONS}
    for o in RANGED:  # GenerateOptions.check (every engine calls it) applies the table's limits
        lo, hi = o.range
        GenerateOptions(**{o.name: lo}).check()
        GenerateOptions(**{o.name: hi}).check()
        with pytest.raises(ValueError, match=o.name):
            GenerateOptions(**{o.name: lo - 1}).check()
        if hi < 2**62:
            with pytest.raises(ValueError, match=o.name):
                GenerateOptions(**{o.name: hi + 1}).check()


def test_protocol_types_and_ranges_are_the_tables():
    assert P.OPTION_TYPES == {o.name: o.wire_type for o in OPTIONS}
    assert P.OPTION_RANGES == {o.name: o.range for o in RANGED}
    assert P.OPTION_RANGES["steps"] == (1, MAX_STEPS)  # the engine's real limit, not 1000
    for o in RANGED:
        lo, hi = o.range
        value = int(hi) if o.kind == "int" else float(hi)
        P.validate_options({o.name: value})
        with pytest.raises(ProtocolError) as e:
            P.validate_options({o.name: (int(lo) if o.kind == "int" else float(lo)) - 1})
        assert e.value.code == ErrorCode.BAD_VALUE
    # unset is sent as nil (or left out): the model's / the style's own value
    P.validate_options({"steps": None, "sampler": None, "guidance": None, "blink_rate": None})
    # explicit values from an older client still pass
    P.validate_options({"steps": 8, "sampler": "dpm", "guidance": 1.0, "blink_rate": 0.0})
    with pytest.raises(ProtocolError) as e:
        P.validate_options({"sampler": "euler"})
    assert e.value.code == ErrorCode.BAD_VALUE


def test_cli_flags_are_the_tables(capsys):
    root, gen = _generate_parser()
    by_dest = {a.dest: a for a in gen._actions}
    for o in OPTIONS:
        if o.flag is None:
            continue
        action = by_dest[o.name]
        assert o.flag in action.option_strings
        assert action.default == o.default, o.name
        if o.kind != "bool":
            assert action.help == o.help(), o.name
    help_text = " ".join(gen.format_help().split())
    for name in ("--steps", "--sampler", "--guidance"):
        assert re.search(rf"{name} \S+ .*?\(default: the model's\)", help_text), name
    assert "(default: the style's own rate)" in help_text
    for o in RANGED:
        lo, hi = o.range
        if hi < 2**62:
            ok = root.parse_args(["generate", "a.wav", o.flag, f"{hi:g}"])
            assert getattr(ok, o.name) == hi
        with pytest.raises(SystemExit):
            root.parse_args(["generate", "a.wav", o.flag, str(lo - 1)])
        assert o.name in capsys.readouterr().err
    ns = root.parse_args(["generate", "a.wav"])
    assert (ns.steps, ns.sampler, ns.guidance, ns.blink_rate) == (None, None, None, None)
    assert set(SAMPLER_NAMES) == set(__import__("motion_server.model.samplers", fromlist=["SAMPLERS"]).SAMPLERS)


def test_protocol_doc_states_the_tables_ranges(repo_dir):
    doc = (repo_dir / "docs" / "protocol.md").read_text()
    for o in RANGED:
        if o.name == "seed":
            continue
        lo, hi = o.range
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{o.name}` |"))
        assert f"[{lo:g}, {hi:g}]" in row, row


def _model_copy(tmp_path, **sampling):
    """The bundled checkpoint with other sampling defaults in its config (the weights are shared)."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").symlink_to(DEFAULT_CHECKPOINT / "model.safetensors")
    cfg = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    assert cfg["sampling"]["steps"] != sampling.get("steps")
    cfg["sampling"].update(sampling)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _speech(seconds: float = 2.0) -> np.ndarray:
    from motion_server_helpers import speech_like_wav

    from motion_server.audio.io import load_audio

    return load_audio(speech_like_wav(seconds))


def test_unset_sampling_options_take_the_checkpoints(tmp_path):
    d = _model_copy(tmp_path, steps=3, sampler="ddim", guidance=1.5)
    eng = DiffusionEngine(d, device="cpu")
    audio = _speech()
    m = eng.generate(audio, 16000, GenerateOptions(seed=1, transcribe=False))
    assert (m.meta["steps"], m.meta["sampler"], m.meta["guidance"]) == (3, "ddim", 1.5)
    assert m.meta["model_defaults"] == ["steps", "sampler", "guidance"]
    asked = eng.generate(audio, 16000, GenerateOptions(seed=1, steps=2, sampler="dpm", guidance=1.0))
    assert (asked.meta["steps"], asked.meta["sampler"], asked.meta["guidance"]) == (2, "dpm", 1.0)
    assert asked.meta["model_defaults"] == []
    with pytest.raises(ValueError, match="steps"):  # the engine's limit is the table's
        eng.generate(audio, 16000, GenerateOptions(steps=MAX_STEPS + 1))


def test_cli_without_steps_uses_the_checkpoints(tmp_path, capsys):
    import soundfile as sf

    d = _model_copy(tmp_path, steps=3)
    wav = tmp_path / "a.wav"
    sf.write(wav, _speech(), 16000)
    out = tmp_path / "a.npz"
    rc = main(["generate", str(wav), "--model", str(d), "--no-transcribe", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert load_motion(out).meta["steps"] == 3


def test_blink_rate_zero_gives_no_blinks_on_the_command_line(tmp_path, capsys):
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, _speech(6.0), 16000)
    takes = {}
    for name, extra in (("own", []), ("none", ["--blink-rate", "0"])):
        out = tmp_path / f"{name}.npz"
        rc = main(["generate", str(wav), "--engine", "diffusion", "--steps", "2", "--no-transcribe",
                   *extra, "--out", str(out), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        takes[name] = load_motion(out)
    assert len(blink_events(takes["own"].weights)) >= 1  # unset: the style's own rate
    assert len(blink_events(takes["none"].weights)) == 0  # 0: no blinks


def test_a_language_is_typed_as_people_write_it_and_refused_in_one_line_where_unknown(capsys):
    root, _ = _generate_parser()
    for typed in ("en", "EN", "en-US", "en_GB", " En "):
        assert root.parse_args(["generate", "a.wav", "--language", typed]).language == "en"
    with pytest.raises(SystemExit):
        root.parse_args(["generate", "a.wav", "--language", "english"])
    assert "unknown language 'english'; choose a language code Whisper knows (en, de" in capsys.readouterr().err
    # over the wire: the same phrase, not the list of 100 codes; an unset language is not sent at all, so
    # a server from before the option still takes a client's jobs
    with pytest.raises(ProtocolError) as e:
        P.validate_options({"language": "eng"})
    assert "a language code Whisper knows" in e.value.message and len(e.value.message) < 200
    P.validate_options({"language": "ja"})
    from motion_server.client import _split_options

    assert "language" not in _split_options(GenerateOptions())[0]
    assert _split_options(GenerateOptions(language="de"))[0]["language"] == "de"


def test_an_unset_language_leaves_the_ledger_keys_of_earlier_outputs_as_they_were():
    from motion_server.animate.run import _keyed_options

    assert "language" not in _keyed_options(GenerateOptions())  # as before the option existed
    assert _keyed_options(GenerateOptions(language="de"))["language"] == "de"  # another take: made again
