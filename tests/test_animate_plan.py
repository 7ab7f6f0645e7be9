"""`talkrig animate` output naming and overwrite rules (pure path logic, no audio or Blender)."""

from __future__ import annotations

from pathlib import Path

import pytest

from motion_server.animate.plan import PlanError, expand_inputs, plan


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_single_input_out_is_the_file_and_render_defaults_next_to_it(tmp_path):
    a = _touch(tmp_path / "in" / "a.wav")
    [it] = plan([a], tmp_path / "o" / "take.fbx", "auto", overwrite=False)
    assert it.out == tmp_path / "o" / "take.fbx" and it.render == tmp_path / "o" / "take.mp4"
    assert it.needs_blender and it.error is None


def test_default_is_glb_in_talkrig_out_and_render_only_writes_just_the_video(tmp_path):
    a = _touch(tmp_path / "a.wav")
    [it] = plan([a], None, None, overwrite=False)
    assert it.out == Path("talkrig_out") / "a.glb"
    [it] = plan([a], None, str(tmp_path / "v.mp4"), overwrite=False)
    assert it.out is None and it.render == tmp_path / "v.mp4" and it.needs_blender


def test_several_inputs_need_a_folder_or_pattern(tmp_path):
    a, b = _touch(tmp_path / "a.wav"), _touch(tmp_path / "b.flac")
    with pytest.raises(PlanError, match=r"\{stem\}"):
        plan([a, b], tmp_path / "one.glb", None, overwrite=False)
    items = plan([a, b], tmp_path / "curves", None, overwrite=False)
    assert [i.out for i in items] == [tmp_path / "curves" / "a.glb", tmp_path / "curves" / "b.glb"]
    items = plan([a, b], str(tmp_path / "{stem}_face.csv"), str(tmp_path / "vid" / "{stem}.mp4"), overwrite=False)
    assert [i.out.name for i in items] == ["a_face.csv", "b_face.csv"]
    assert [i.render.name for i in items] == ["a.mp4", "b.mp4"]
    assert all(i.needs_blender for i in items), "a preview video is rendered in Blender, even beside a CSV"
    [curves_only] = plan([a], str(tmp_path / "a.csv"), None, overwrite=False)
    assert not curves_only.needs_blender


def test_unknown_suffix_is_refused_with_the_choices(tmp_path):
    a = _touch(tmp_path / "a.wav")
    with pytest.raises(PlanError, match=r"\.glb"):
        plan([a], tmp_path / "a.obj", None, overwrite=False)
    with pytest.raises(PlanError, match=r"\.mp4"):
        plan([a], None, tmp_path / "a.avi", overwrite=False)


def test_existing_output_fails_that_input_only_unless_overwrite(tmp_path):
    a, b = _touch(tmp_path / "a.wav"), _touch(tmp_path / "b.wav")
    _touch(tmp_path / "out" / "a.npz", b"precious")
    items = plan([a, b], str(tmp_path / "out" / "{stem}.npz"), None, overwrite=False)
    assert "--overwrite" in items[0].error and "a.npz" in items[0].error
    assert items[1].error is None
    assert all(i.error is None for i in plan([a, b], str(tmp_path / "out" / "{stem}.npz"), None, overwrite=True))


def test_two_inputs_with_the_same_name_do_not_share_an_output(tmp_path):
    a1, a2 = _touch(tmp_path / "x" / "a.wav"), _touch(tmp_path / "y" / "a.flac")
    items = plan([a1, a2], tmp_path / "out", None, overwrite=True)
    assert items[0].error is None
    assert "same file name" in items[1].error and str(a1) in items[1].error


def test_folders_expand_to_their_audio_files_sorted(tmp_path):
    for n in ("b.wav", "a.flac", "notes.txt", "c.TextGrid", ".hidden.wav"):
        _touch(tmp_path / "d" / n)
    inputs, notes = expand_inputs([tmp_path / "d"])
    assert [p.name for p in inputs] == ["a.flac", "b.wav"]
    assert "skipped 2" in notes[0]
    with pytest.raises(PlanError, match="no audio"):
        expand_inputs([_touch(tmp_path / "e" / "x.txt").parent])


def test_gltf_buffer_next_to_it_counts_as_an_existing_output(tmp_path):
    a = _touch(tmp_path / "a.wav")
    _touch(tmp_path / "a.bin")
    [it] = plan([a], tmp_path / "a.gltf", None, overwrite=False)
    assert it.error and "a.bin" in it.error


def test_an_output_never_replaces_an_input_recording(tmp_path):
    clip = _touch(tmp_path / "take.mp4", b"camera recording")
    [it] = plan([clip], None, str(clip), overwrite=True)
    assert "input recording" in it.error
    other = _touch(tmp_path / "other.wav")
    items = plan([clip, other], None, str(tmp_path / "{stem}.mp4"), overwrite=True)
    assert "input recording" in items[0].error and items[1].error is None


def test_a_transcript_file_beside_the_audio_is_aligned_unless_turned_off(tmp_path):
    import shutil

    from motion_server.animate.generate import animate_file, make_generator
    from motion_server.engine.base import GenerateOptions

    audio = tmp_path / "jfk.flac"
    shutil.copy(Path(__file__).resolve().parents[1] / "examples" / "jfk.flac", audio)
    gen = make_generator("procedural")
    _, _, notes = animate_file(gen, audio, GenerateOptions(transcribe=False))
    assert not any("transcript" in n for n in notes)
    (tmp_path / "jfk.txt").write_text("And so my fellow Americans, ask not what your country can do for you, "
                                      "ask what you can do for your country.\n", encoding="utf-8")
    motion, _, notes = animate_file(gen, audio, GenerateOptions())
    assert "transcript from jfk.txt" in notes and motion.meta["phones"] == "aligned"
    assert motion.meta["transcript"]["source"] == "given"
    motion, _, notes = animate_file(gen, audio, GenerateOptions(transcribe=False), sidecar=False)
    assert motion.meta["phones"] == "recognised" and not any("transcript" in n for n in notes)
    assert motion.meta["transcript"] == {"source": "none", "used": False,
                                         "reason": "recognition switched off (--no-transcribe)"}


def test_an_output_never_replaces_the_character_or_a_style_clip_even_with_overwrite(tmp_path):
    a = tmp_path / "line.wav"
    char, style = tmp_path / "hero.blend", tmp_path / "take.csv"
    [item] = plan([a], str(char), None, overwrite=True, read_files=(str(char), None))
    assert "reads" in item.error and "hero.blend" in item.error
    [item] = plan([a], str(tmp_path / "sub" / ".." / "take.csv"), None, overwrite=True, read_files=(None, str(style)))
    assert "reads" in item.error
