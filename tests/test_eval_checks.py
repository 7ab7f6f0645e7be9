"""`talkrig eval --suite robustness|style` on the bundled model: the check suites run end to end, write
their JSON, and the properties that hold by construction (or that users see at once) hold."""

from __future__ import annotations

import json
import subprocess
import sys


def _eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_server", "eval", *args],
                          capture_output=True, text=True, timeout=900)


def test_robustness_every_shared_clip_gives_finite_in_range_motion(shared_dir, tmp_path):
    out = tmp_path / "rob.json"
    r = _eval("--suite", "robustness", "--shared-dir", str(shared_dir), "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    checks = json.loads(out.read_text())["suites"]["robustness"]["checks"]
    clips = json.loads((shared_dir / "data" / "speech" / "MANIFEST.json").read_text())["clips"]
    assert checks["all_clips"]["clips"] == len(clips)
    assert checks["all_clips"]["failed"] == [], checks["all_clips"]["rows"]
    noise = checks["noise"]
    assert noise["phones_source"].startswith("transcript aligned") and noise["bilabials"] >= 4
    assert len(noise["audio_only"]["closure"]) == len(noise["with_transcript"]["closure"]) == 4
    assert "every shared clip" in r.stdout and "noise (audio only" in r.stdout


def test_style_guidance_sweep_zero_is_neutral_and_styles_grow_with_scale(shared_dir, tmp_path):
    out = tmp_path / "style.json"
    r = _eval("--suite", "style", "--shared-dir", str(shared_dir), "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    checks = json.loads(out.read_text())["suites"]["style"]["checks"]
    sweep = checks["guidance_sweep"]
    assert sweep["summary"]["scale0_is_neutral"]
    assert sweep["summary"]["monotonic"] == sweep["summary"]["presets"] == 7
    # what a user sees: happy moves the smile, surprised the brows
    assert {"mouthSmileLeft", "mouthSmileRight"} & set(sweep["presets"]["happy"]["channels"])
    assert any(c.startswith("brow") for c in sweep["presets"]["surprised"]["channels"])
    assert any("reference recovery" in n for n in checks["notes"])  # no --data: says what it skipped
    # the audio-only style prior is also scored on the shared acted-emotion recordings (anger, joy,
    # sadness, neutral), whose labels map onto the presets
    acted = checks["style_prior_acted"]
    assert acted["clips"] == 7 and set(acted["per_emotion"]) == {"angry", "happy", "sad", "neutral"}
    lo, hi = acted["ci95"]  # seven clips cannot pin the accuracy down, and the report says so
    assert lo <= acted["accuracy"] <= hi and hi - lo > 0.4


def test_wilson_interval_brackets_the_rate():
    from motion_server.evaluation.style_checks import wilson_interval

    lo, hi = wilson_interval(60, 100)
    assert lo < 0.6 < hi and 0.18 < hi - lo < 0.2  # about +-0.1 at n = 100
    lo3, hi3 = wilson_interval(180, 300)
    assert hi3 - lo3 < hi - lo  # more clips, tighter
    assert wilson_interval(0, 7)[0] == 0.0 and wilson_interval(0, 0) is None


def test_style_suite_on_a_corpus_scores_held_out_voices_only(shared_dir, tmp_path):
    import pytest

    from motion_server.synth.corpus import CorpusOptions, build_corpus
    from motion_server.synth.speech import get_backend

    if not get_backend("espeak").available():
        pytest.skip("espeak-ng is not installed (sudo apt-get install espeak-ng)")
    corpus = tmp_path / "c"
    build_corpus(corpus, CorpusOptions(seed=5, hours=0.01, voices=("espeak",), shard_size=8), workers=1,
                 progress=False)
    out = tmp_path / "style.json"
    r = _eval("--suite", "style", "--shared-dir", str(shared_dir), "--data", str(corpus), "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    checks = json.loads(out.read_text())["suites"]["style"]["checks"]
    prior = checks["style_prior"]
    splits = json.loads((corpus / "MANIFEST.json").read_text())["splits"]
    held = set(splits["test_voices"])
    from motion_server.synth.corpus import CorpusReader

    n_val = sum(u.voice in splits["val_voices"] for u in CorpusReader(corpus, "val"))
    if n_val:  # the val voices are scored too, and only they
        assert set(checks["style_prior_val_voices"]["per_voice"]) <= set(splits["val_voices"])
        assert checks["style_prior_val_voices"]["clips"] == n_val
    assert prior["clips"] > 0 and set(prior["per_voice"]) <= held  # never a voice it trained on
    assert sum(n for _, n in prior["per_voice"].values()) == prior["clips"]
    assert sum(r_ for r_, _ in prior["per_voice"].values()) == round(prior["accuracy"] * prior["clips"])
    lo, hi = prior["ci95"]
    assert lo <= prior["accuracy"] <= hi
    assert "per voice:" in r.stdout
