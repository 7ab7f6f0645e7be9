"""Transcribe in the add-on: the Transcribe button fills the Transcript field from a real motion server
(Whisper weights, procedural engine, loopback), never over typed text unless asked; Auto-transcribe off
sends ``transcribe: False``; a take keeps the transcript it was made with on its Action. The panel's lines
come from small pure functions, tested without Blender."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from blender_helpers import draw_panel
from waiting import wait_until

from blender_addon.core.transcript import (
    ALIGNER_LANGUAGES,
    language_line,
    take_line,
    take_properties,
    transcribed_message,
    withheld_transcript,
)

REPO = Path(__file__).resolve().parents[1]
JFK = REPO / "examples" / "jfk.flac"
HELLO = REPO / "examples" / "hello_flite.flac"
DEADLINE_S = 180.0


# -- pure: no Blender, no server ------------------------------------------------------------------------


def test_the_addon_knows_the_servers_aligner_languages():
    from motion_server.transcribe import ALIGNER_LANGUAGES as SERVER

    assert ALIGNER_LANGUAGES == SERVER


def test_panel_lines_say_what_a_transcript_is_and_whether_it_drives_the_lips():
    level, msg = transcribed_message({"text": "And so my fellow Americans", "language": "en",
                                      "language_probability": 0.96})
    assert level == "INFO" and "5 words" in msg and "'en' (96%)" in msg
    level, msg = transcribed_message({"text": "Ich bin ein Berliner", "language": "de"})
    assert level == "WARNING" and msg.startswith("detected 'de': the transcript will not drive the lips")
    assert transcribed_message({"text": " ", "language": "en"})[0] == "WARNING"
    assert language_line("en") == "language: en" and language_line("") == ""
    assert language_line("de").startswith("detected 'de': the transcript will not drive the lips")
    # text in a language without an aligner is kept with the take but not sent; English (or unknown) is sent
    assert withheld_transcript("Ich bin ein Berliner", "de") == {
        "source": "given", "text": "Ich bin ein Berliner", "language": "de", "used": False,
        "reason": "detected 'de' has no phone aligner; the audio alone drove the lips"}
    assert withheld_transcript("hello", "en") is None and withheld_transcript("hello", "") is None
    assert withheld_transcript("", "de") is None

    recognised = {"source": "recognised", "text": "And so my fellow Americans ask not what your country can do",
                  "language": "en", "used": True, "reason": "recognised transcript used"}
    props = take_properties(recognised)
    assert props == {"transcript": recognised["text"], "transcript_source": "recognised",
                     "transcript_language": "en", "transcript_used": True,
                     "transcript_reason": "recognised transcript used"}
    prefixed = {f"talkrig_{k}": v for k, v in props.items()}
    assert take_line(prefixed) == "take made with: recognised [en] 'And so my fellow Americans ask not what…' (used)"
    assert take_line(take_properties({"source": "given", "text": "Hello there", "used": True})) == (
        "take made with: given 'Hello there' (used)")
    assert take_line(take_properties({"source": "none", "used": False, "reason": "recognition switched off"})) == (
        "take made with: no transcript (recognition switched off)")
    assert take_properties(None) == {} and take_line({}) == ""


# -- real Blender + a real motion server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("bpy")
    pytest.importorskip("faster_whisper")
    from motion_server_helpers import ServerProcess

    proc = ServerProcess(tmp_path_factory.mktemp("server"), engine="procedural", wait_s=180)
    yield proc
    proc.close()


@pytest.fixture
def addon(server):
    import addon_utils
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.server_address = server.address
    prefs.timeout_s = 120
    yield bpy.context.scene.talkrig
    addon_utils.disable("blender_addon", default_set=True)


def _poll_message(op) -> str:
    """The reason a greyed-out operator gives (Blender puts the poll message into the error)."""
    assert not op.poll()
    with pytest.raises(RuntimeError) as exc:
        op()
    return str(exc.value)


@pytest.mark.blender
def test_every_greyed_out_transcribe_button_says_why(addon):
    import bpy

    s = addon
    op = bpy.ops.talkrig.transcribe
    assert "No audio chosen" in _poll_message(op)
    s.audio_source = "STRIP"
    assert "No sound strip chosen" in _poll_message(op)
    s.audio_source, s.audio_path = "FILE", str(JFK)
    assert not s.server_ok
    assert "No motion server connected" in _poll_message(op)
    assert bpy.ops.talkrig.server_check() == {"FINISHED"} and op.poll()
    s.running = True
    assert "A generate job is running" in _poll_message(op)
    s.running, s.transcribing = False, True
    assert "A transcribe job is running" in _poll_message(op)
    assert "A transcribe job is running" in _poll_message(bpy.ops.talkrig.generate)
    s.transcribing = False
    assert op.poll()
    assert "No object selected" in _poll_message(bpy.ops.talkrig.generate)  # Generate also needs a character


@pytest.mark.blender
def test_transcribe_fills_the_field_and_never_replaces_typed_text_unasked(addon):
    import bpy

    s = addon
    s.audio_source, s.audio_path = "FILE", str(JFK)
    assert bpy.ops.talkrig.server_check() == {"FINISHED"}
    assert bpy.ops.talkrig.transcribe() == {"FINISHED"}  # background: the synchronous path
    assert "fellow Americans" in s.transcript and s.transcript_language == "en"
    assert s.status == "transcribed [en]"

    # typed text is never replaced without asking, also not by INVOKE_DEFAULT (background: no popup)
    s.transcript, s.transcript_language = "my own words", ""
    for how in ("EXEC_DEFAULT", "INVOKE_DEFAULT"):
        with pytest.raises(RuntimeError, match="Transcript field has text"):
            bpy.ops.talkrig.transcribe(how)
        assert s.transcript == "my own words"

    # replace=True does; the audio is chosen exactly as Generate chooses it (here a sound strip)
    scene = bpy.context.scene
    scene.sequence_editor_create()
    strip = scene.sequence_editor.strips.new_sound("greeting", str(HELLO), 1, 1)
    s.audio_source, s.strip_name = "STRIP", strip.name
    assert bpy.ops.talkrig.transcribe(replace=True) == {"FINISHED"}
    assert s.transcript.startswith("Hello from") and s.transcript_language == "en"


@pytest.mark.blender
def test_non_blocking_transcribe_mirrors_progress_and_cancels(addon, server):
    """The modal's job, driven by a loop (timers never fire in background mode): cancelled while it
    runs, the field stays as it was and the panel says so."""
    import bpy

    from blender_addon import server_link
    from blender_addon.ops_transcribe import PendingTranscribe

    s = addon
    client = server_link.client(server.address, 120.0)
    pending = PendingTranscribe(client.submit_transcribe(str(JFK)), replace=False)
    seen = []

    def accepted() -> bool:  # the modal timer's tick, until the server has accepted the job
        done = pending.tick(s)
        seen.append(s.status)
        return done or pending.job.id is not None

    wait_until(accepted, DEADLINE_S, "the server to accept the job", interval=0.02)
    # the first poll returns before the job has run (a blocking poll would show its end); how far the
    # server has got by then is a race on a loaded machine, so every state before the end is fine (the
    # cancel below then finds the job still running)
    assert seen[0] in ("submitted", "queued", "started", "transcribing"), \
        f"the first poll must return at once (non-blocking), saw {seen[0]!r}"
    pending.job.cancel()
    wait_until(lambda: pending.tick(s), DEADLINE_S, "the cancelled job to end", interval=0.02)
    messages = []
    assert pending.finish(bpy.context, lambda level, msg: messages.append((level, msg))) == {"CANCELLED"}
    assert pending.job.status.state == "cancelled" and s.status == "transcribe cancelled"
    assert messages[0][0] == {"WARNING"} and s.transcript == ""


@pytest.mark.blender
def test_a_take_keeps_the_transcript_it_was_made_with(addon, tmp_path):
    import bpy

    from blender_addon.core.demo_head import build_demo_head
    from blender_addon.jobs import options_from_settings
    from blender_addon.ui import TALKRIG_PT_audio, TALKRIG_PT_generate, _active_take
    from rig_mapping.formats import load_motion

    audio = tmp_path / "hello.flac"  # a copy: no hello.txt beside it, so nothing is given
    shutil.copy(HELLO, audio)
    head = build_demo_head()
    bpy.context.view_layer.objects.active = head.mesh
    s = addon
    s.audio_source, s.audio_path = "FILE", str(audio)
    assert bpy.ops.talkrig.server_check() == {"FINISHED"}  # Generate is greyed out until a server answered

    def generate() -> bpy.types.Action:
        assert bpy.ops.talkrig.generate(synchronous=True) == {"FINISHED"}
        take = _active_take(bpy.context)
        assert take is not None and take == head.mesh.data.shape_keys.animation_data.action
        return take

    # Auto-transcribe off: the server is told not to recognise, and says so
    s.auto_transcribe = False
    assert options_from_settings(s, bpy.context.scene)["transcribe"] is False
    take = generate()
    meta = load_motion(s.last_motion).meta["transcript"]
    assert meta["source"] == "none" and "switched off" in meta["reason"]
    assert take["talkrig_transcript_source"] == "none" and not take["talkrig_transcript_used"]

    # on (the default): recognised, English; the take says whether it drove the lips (the server's gate
    # decides; this synthetic voice's last word is unsure), and the panel shows it for the active take
    s.auto_transcribe = True
    assert "transcribe" not in options_from_settings(s, bpy.context.scene)
    take = generate()
    meta = load_motion(s.last_motion).meta["transcript"]
    assert take["talkrig_transcript_source"] == "recognised" and take["talkrig_transcript_language"] == "en"
    assert take["talkrig_transcript"] == meta["text"] and take["talkrig_transcript"].startswith("Hello from")
    assert bool(take["talkrig_transcript_used"]) == meta["used"]
    assert take["talkrig_transcript_reason"] == meta["reason"]
    assert take_line(take).startswith("take made with: recognised [en] 'Hello from")
    assert take_line(take) in " ".join(draw_panel(TALKRIG_PT_generate, bpy.context))  # wrapped to the sidebar

    # typed: the typed text is what the take keeps
    s.transcript = "Hello from Talk Rig."
    take = generate()
    assert take["talkrig_transcript"] == "Hello from Talk Rig." and take["talkrig_transcript_source"] == "given"
    assert take["talkrig_transcript_used"]
    # text Transcribe found to be German is kept with the take but not sent (aligned as English it would
    # close the lips in the wrong places), and not recognised again (that would find German again)
    s.transcript, s.transcript_language = "Hallo von Talk Rig.", "de"
    opts = options_from_settings(s, bpy.context.scene)
    assert "transcript" not in opts and opts["transcribe"] is False
    take = generate()
    assert take["talkrig_transcript"] == "Hallo von Talk Rig." and take["talkrig_transcript_language"] == "de"
    assert take["talkrig_transcript_source"] == "given" and not take["talkrig_transcript_used"]
    drawn = draw_panel(TALKRIG_PT_audio, bpy.context)
    assert "op:talkrig.transcribe" in drawn and "prop:auto_transcribe" in drawn
    assert language_line("de") in " ".join(drawn) and "prop:transcript_language" in drawn


@pytest.mark.blender
def test_headless_no_transcribe_animates_from_the_audio_alone(server, tmp_path, capsys):
    import json

    import bpy

    from blender_addon import headless

    audio = tmp_path / "hello.flac"  # no hello.txt beside it
    shutil.copy(HELLO, audio)
    argv = [str(audio), "--character", "demo", "--server", server.address, "--no-transcribe", "--json",
            "--out", str(tmp_path / "hello.blend")]
    assert headless.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    (take,) = json.loads(out[out.index("\n{\n") + 1 if not out.startswith("{") else 0:])["takes"]
    assert take["transcript"]["transcript_source"] == "none" and "switched off" in take["transcript"]["transcript_reason"]
    assert bpy.data.actions["hello"]["talkrig_transcript_source"] == "none"
