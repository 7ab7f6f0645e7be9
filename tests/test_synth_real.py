"""`talkrig synth --real`: real recordings -> shards the synthetic corpus reader reads, with aligned phones,
closed lips on /p b m/, byte-identical resume, honest skips, and Kaldi test speakers kept out of training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from motion_server.audio.io import load_audio
from motion_server.evaluation.geometry import lip_gap
from motion_server.synth.corpus import MANIFEST, CorpusError, CorpusReader
from motion_server.synth.real import REPORT, Clip, RealOptions, assign_splits, build_real_corpus

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SPEECHOCEAN = SHARED / "data" / "real_speech" / "speechocean762"
CLOSED_CM = 0.1  # lips touching on the ICT face (as tests/test_performer.py)
OPTS = RealOptions(source="", seed=5, shard_size=2)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """Two speakers' folders with sidecar transcripts (.txt and .lab) and one file that is not audio."""
    root = tmp_path_factory.mktemp("rec") / "voices"
    for spk, stem, side in (("kennedy", "jfk", ".txt"), ("flite", "hello_flite", ".lab")):
        (root / spk).mkdir(parents=True)
        shutil.copy(EXAMPLES / f"{stem}.flac", root / spk / f"{stem}.flac")
        shutil.copy(EXAMPLES / f"{stem}.txt", root / spk / f"{stem}{side}")
    (root / "flite" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
    return root


@pytest.fixture(scope="module")
def corpus(recordings: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "c"
    build_real_corpus(recordings, out, OPTS, workers=1, progress=False)
    return out


def test_shards_read_as_a_corpus_with_aligned_phones_and_motion(corpus: Path, recordings: Path) -> None:
    reader = CorpusReader(corpus, "all", verify=True)
    utts = {u.sentence_id: u for u in reader}
    assert set(utts) == {"jfk", "hello_flite"} and len(reader) == 2
    for stem, u in utts.items():
        dur = u.audio.size / u.sr
        assert u.sr == 16000 and u.motion.fps == 30 and abs(u.motion.n_frames - dur * 30) <= 1
        assert u.phones[0].start == 0 and u.phones[-1].end == pytest.approx(dur, abs=1e-3)
        assert len([p for p in u.phones if not p.is_silence]) >= 8
        assert u.emotion == "neutral" and 1 <= u.intensity <= 3 and u.augment == {} and u.language == "en"
        assert u.text == (EXAMPLES / f"{stem}.txt").read_text().strip()
        # the recording itself, not augmented: equal to the decoded file up to 16-bit rounding
        src = load_audio(next(recordings.rglob(f"{stem}.flac")), sr=16000)
        assert np.abs(u.audio - src).max() < 1e-4
    assert utts["jfk"].voice == "real:voices/kennedy" and utts["hello_flite"].voice == "real:voices/flite"
    assert not np.allclose(utts["jfk"].style, utts["hello_flite"].style)  # a sampled speaker style each


def test_lips_close_on_aligned_bilabials(corpus: Path) -> None:
    checked = 0
    for u in CorpusReader(corpus, "all"):
        gap = lip_gap(u.motion)
        for p in u.phones:
            if p.symbol in ("P", "B", "M"):
                g = gap[int(round(0.5 * (p.start + p.end) * u.motion.fps))]
                assert g <= CLOSED_CM, f"{u.sentence_id}: {p.symbol} at {p.start:.2f}s, lips {g:.2f} cm apart"
                checked += 1
    assert checked >= 3  # "my", "Americans", "from"


def test_broken_file_is_reported_not_fatal(corpus: Path) -> None:
    rep = json.loads((corpus / REPORT).read_text())
    assert rep["found"] == rep["selected"] == 3 and rep["utterances"] == 2
    assert [s["file"] for s in rep["skipped"]] == ["flite/broken.wav"]
    assert "undecodable" in rep["skipped"][0]["reason"] and rep["skipped_by_reason"] == {"undecodable": 1}
    assert rep["transcript_sources"] == {"sidecar": 2}
    assert {c["file"] for c in rep["clips"]} == {"kennedy/jfk.flac", "flite/hello_flite.flac"}


def test_same_inputs_same_bytes_and_resume(corpus: Path, recordings: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_real_corpus(recordings, again, OPTS, workers=1, progress=False)
    assert _files(again) == _files(corpus)
    # an interrupted build: one shard lost, the other kept untouched and the lost one rebuilt identically
    shards = sorted(again.glob("shard-*.npz"))
    assert len(shards) == 2
    stamp = shards[0].stat().st_mtime_ns
    shards[1].unlink()
    build_real_corpus(recordings, again, OPTS, workers=1, progress=False)
    assert shards[0].stat().st_mtime_ns == stamp, "a finished shard was rebuilt"
    assert _files(again) == _files(corpus)
    # other options never overwrite it
    with pytest.raises(CorpusError, match="different options .*seed: 5 there, 6 now"):
        build_real_corpus(recordings, again, RealOptions(source="", seed=6, shard_size=2), progress=False)
    assert _files(again) == _files(corpus)


def test_two_workers_build_the_same_corpus_and_exit_cleanly(corpus: Path, recordings: Path, tmp_path: Path) -> None:
    """`--workers 2` (a process pool) writes the same bytes as one worker, and the pool's workers exit on
    their own: killed ones, after recognising an untranscribed take, left Python's "leaked semaphore
    objects" warning at the end of the build."""
    import subprocess
    import sys

    def synth(src: Path, out: Path, shard_size: int) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "motion_server", "synth", "--real", str(src), "--out", str(out),
                               "--seed", "5", "--shard-size", str(shard_size), "--workers", "2"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    synth(recordings, tmp_path / "w2", 2)
    assert _files(tmp_path / "w2") == _files(corpus)

    # takes without transcripts: each worker loads the recogniser (the examples' recognitions are not
    # trusted enough to train on, so both are skipped, which is not what this checks)
    untranscribed = tmp_path / "untranscribed"
    untranscribed.mkdir()
    for stem in ("jfk", "hello_flite"):
        shutil.copy(EXAMPLES / f"{stem}.flac", untranscribed / f"{stem}.flac")
    proc = synth(untranscribed, tmp_path / "rec", 1)
    skipped = json.loads((tmp_path / "rec" / REPORT).read_text())["skipped"]
    assert len(skipped) == 2 and all("recogniser" in s["reason"] for s in skipped), skipped
    assert "leaked" not in proc.stderr, proc.stderr[-2000:]


def test_cli_errors_name_the_fix(tmp_path: Path, capsys) -> None:
    from motion_server.cli import main

    assert main(["synth", "--real", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "does not exist; give the folder that holds the recordings" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    assert main(["synth", "--real", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "holds no audio files" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "o"), "--limit", "3"]) == 2
    assert main(["synth", "--real", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--emotions", "sad"]) == 2


def test_val_holds_out_whole_speakers() -> None:
    clips = [Clip(f"s{s}/u{u}.wav", f"u{u}", f"d/s{s}", "hi", "sidecar", s == 0, 1.0)
             for s in range(12) for u in range(3)]
    split = {c.path: c.split for c in assign_splits(clips, seed=1, val_share=0.1)}
    by_speaker: dict[str, set[str]] = {}
    for c in clips:
        by_speaker.setdefault(c.speaker, set()).add(split[c.path])
    assert all(len(s) == 1 for s in by_speaker.values())  # no speaker in two splits
    assert by_speaker["d/s0"] == {"test"}
    assert sum(s == {"val"} for s in by_speaker.values()) == 1  # 10 % of 11 non-test speakers, rounded


def _speechocean_sample(dest: Path) -> dict[str, str]:
    """Two test speakers and one train speaker, two short clips each, in speechocean762's layout, plus one
    recording of a test speaker that no Kaldi list names (a sidecar gives its words). Returns utt -> speaker."""
    picked: dict[str, str] = {}
    for part, n_spk in (("test", 2), ("train", 1)):
        spk = dict(ln.split() for ln in (SPEECHOCEAN / part / "utt2spk").read_text().splitlines() if ln.strip())
        text = dict(ln.split(maxsplit=1) for ln in (SPEECHOCEAN / part / "text").read_text().splitlines() if ln.strip())
        speakers = sorted(set(spk.values()))[:n_spk]
        keep = [u for s in speakers for u in sorted((u for u in spk if spk[u] == s),
                                                     key=lambda u: (len(text[u].split()), u))[:2]]  # short ones
        (dest / part).mkdir(parents=True)
        (dest / part / "utt2spk").write_text("".join(f"{u} {spk[u]}\n" for u in keep))
        (dest / part / "text").write_text("".join(f"{u}\t{text[u]}\n" for u in keep))
        for u in keep:
            src = next((SPEECHOCEAN / "audio").glob(f"*/{u}.opus"))
            (dest / "audio" / src.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / "audio" / src.parent.name / src.name)
            picked[u] = spk[u]
        if part == "test":  # the unlisted recording: a copy of a listed one under a new name
            u = keep[0]
            folder = dest / "audio" / next((SPEECHOCEAN / "audio").glob(f"*/{u}.opus")).parent.name
            shutil.copy(folder / f"{u}.opus", folder / "unlisted.opus")
            (folder / "unlisted.txt").write_text(text[u])
            picked["unlisted"] = spk[u]
    return picked


@pytest.mark.skipif(not SPEECHOCEAN.is_dir(), reason=f"{SPEECHOCEAN} is not on this machine (the shared real "
                    "speech data lives outside the repository; TALKRIG_SHARED names its folder)")
def test_speechocean_test_speakers_land_only_in_test(tmp_path: Path) -> None:
    src = tmp_path / "speechocean762"
    picked = _speechocean_sample(src)
    test_spk = set((SPEECHOCEAN / "test" / "utt2spk").read_text().split()[1::2])
    m, rep = build_real_corpus(src, tmp_path / "out", RealOptions(source="", shard_size=4), progress=False)
    assert rep["skipped"] == [] and m["utterances"] == len(picked) == 7
    assert rep["transcript_sources"] == {"kaldi": 6, "sidecar": 1}
    seen = {}
    for u in CorpusReader(tmp_path / "out", "all"):
        spk = picked[u.sentence_id]
        assert u.voice == f"real:speechocean762/{spk}"
        assert u.split == ("test" if spk in test_spk else "train"), f"{u.sentence_id} of speaker {spk} in {u.split}"
        seen[u.sentence_id] = u.split
    assert seen["unlisted"] == "test"  # a test speaker's recording no list names still stays out of training
    assert m["counts"] == {"train": 2, "val": 0, "test": 5}
    assert set(m["splits"]["test_voices"]) == {f"real:speechocean762/{s}" for s in set(picked.values()) & test_spk}
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["kind"] == "real"
