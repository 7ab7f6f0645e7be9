"""Procedural performer: lip closure, anticipation, determinism, blinks, emotion presets, style vectors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from motion_server.evaluation.geometry import lip_gap
from motion_server.performer import (
    EMOTIONS,
    STYLE_FIELDS,
    SpeakerStyle,
    emotion_preset,
    perform,
    sample_speaker_style,
)
from motion_server.performer.style import STYLE_RANGES
from motion_server.phones import Phone
from motion_server.synth.speech import Prosody as SpeechProsody

CLOSED_CM = 0.1  # lips touching on the ICT face (neutral, touching, measures ~0.06 cm)


def seq(spec: str, t0: float = 0.0) -> list[Phone]:
    """'SIL:0.5 M:0.09 AA:0.18' -> back-to-back phones."""
    out, t = [], t0
    for item in spec.split():
        sym, dur = item.split(":")
        out.append(Phone(sym, t, t + float(dur)))
        t += float(dur)
    return out


def mid_frame(p: Phone, fps: float) -> int:
    return int(round(0.5 * (p.start + p.end) * fps))


MAPABA = seq("SIL:0.4 M:0.09 AA:0.18 P:0.08 AA:0.18 B:0.07 AA:0.2 SIL:0.4")


@pytest.mark.parametrize("emotion", ["neutral", "happy", "disgusted", "surprised"])
def test_bilabials_close_lips_and_open_vowels_open(emotion):
    m = perform(MAPABA, None, 16000, emotion=emotion, intensity=3, rng=3)
    gap = lip_gap(m)
    for p in MAPABA:
        g = gap[mid_frame(p, m.fps)]
        if p.symbol in "MPB":
            assert g <= CLOSED_CM, f"{p.symbol} at {p.start:.2f}s: lips {g:.2f} cm apart under {emotion}"
        elif p.symbol == "AA":
            assert g >= 0.8, f"AA at {p.start:.2f}s opens only {g:.2f} cm"


def test_closure_survives_fast_speech_and_low_frame_rate():
    # 40 ms bilabials between vowels at 24 fps: blending alone would leave the lips apart
    phones = seq("SIL:0.3 " + " ".join(["AA:0.09 M:0.04 IY:0.08 B:0.04"] * 6) + " SIL:0.3")
    m = perform(phones, None, 16000, rng=0, fps=24.0)
    gap = lip_gap(m)
    closed = [gap[mid_frame(p, m.fps)] <= CLOSED_CM for p in phones if p.symbol in "MB"]
    assert all(closed)


def test_lips_anticipate_an_m_after_silence():
    fps = 100.0
    phones = seq("SIL:0.6 M:0.1 AA:0.2 SIL:0.6 AA:0.2 SIL:0.5")
    m = perform(phones, None, 16000, rng=0, fps=fps, blink_rate=0)
    onset_m, onset_aa = phones[1].start, phones[4].start
    press = m.channel("mouthPressLeft")
    first = np.flatnonzero(press > 0.25 * press.max())[0] / fps
    assert first < onset_m - 0.04, f"lip press starts {onset_m - first:.3f}s before the M (want > 40 ms)"
    jaw = m.channel("jawOpen")
    rest = jaw[int(1.1 * fps)]
    rise = np.flatnonzero(jaw[int(1.1 * fps):] > rest + 0.05)[0] / fps + 1.1
    assert onset_aa - 0.2 < rise < onset_aa - 0.04, f"jaw starts opening {onset_aa - rise:.3f}s before AA"



def test_labiodentals_tuck_the_lower_lip_and_rounded_vowels_pucker():
    phones = seq("SIL:0.4 F:0.1 AA:0.2 V:0.09 IY:0.2 UW:0.22 AA:0.2 OW:0.22 SIL:0.4")
    m = perform(phones, None, 16000, rng=0, blink_rate=0)

    def at(symbol: str, channel: str) -> float:
        return float(np.mean([m.channel(channel)[mid_frame(p, m.fps)] for p in phones if p.symbol == symbol]))

    for fv in ("F", "V"):
        assert at(fv, "mouthRollLower") > at("AA", "mouthRollLower") + 0.2, f"{fv}: lower lip not tucked"
        assert at(fv, "jawOpen") < at("AA", "jawOpen") - 0.1, f"{fv}: jaw too open"
    for rounded in ("UW", "OW"):
        lips = at(rounded, "mouthPucker") + at(rounded, "mouthFunnel")
        spread = at("IY", "mouthPucker") + at("IY", "mouthFunnel")
        assert lips > spread + 0.25, f"{rounded}: no rounding ({lips:.2f} vs IY {spread:.2f})"

def test_short_unstressed_vowels_open_less_than_stressed_ones():
    ph = [Phone("SIL", 0, 0.4), Phone("AA", 0.4, 0.45, stress=0), Phone("SIL", 0.45, 1.0),
          Phone("AA", 1.0, 1.2, stress=1), Phone("SIL", 1.2, 1.6)]
    jaw = perform(ph, None, 16000, rng=0, fps=100, blink_rate=0).channel("jawOpen")
    assert jaw[95:125].max() > jaw[35:55].max() + 0.1


def test_same_seed_same_performance_other_seed_differs():
    x = np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32)
    a = perform(MAPABA, x, 16000, rng=7)
    b = perform(MAPABA, x, 16000, rng=np.random.default_rng(7))
    c = perform(MAPABA, x, 16000, rng=8)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.head, b.head)
    assert not np.array_equal(a.weights, c.weights)
    # lip sync does not depend on the seed; only the nonverbal layers do
    assert np.allclose(a.channel("mouthClose"), c.channel("mouthClose"))


def _blinks_per_minute(m) -> float:
    peaks, _ = find_peaks(m.channel("eyeBlinkLeft"), height=0.5, distance=3)
    return len(peaks) / (m.duration / 60)


def test_blink_rate_is_natural_and_follows_emotion_and_override():
    silence = np.zeros(16000 * 60, np.float32)
    neutral = [_blinks_per_minute(perform([], silence, 16000, rng=s)) for s in range(4)]
    assert all(8 <= r <= 30 for r in neutral), neutral
    angry = [_blinks_per_minute(perform([], silence, 16000, emotion="angry", intensity=3, rng=s)) for s in range(4)]
    assert np.mean(angry) > np.mean(neutral) + 2
    assert _blinks_per_minute(perform([], silence, 16000, rng=0, blink_rate=0)) == 0
    m = perform([], silence, 16000, rng=0, blink_rate=40)
    assert 30 <= _blinks_per_minute(m) <= 50
    # both eyes blink together
    assert np.corrcoef(m.channel("eyeBlinkLeft"), m.channel("eyeBlinkRight"))[0, 1] > 0.9


EXPECTED = {
    "happy": ["mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft"],
    "sad": ["mouthFrownLeft", "browInnerUp"],
    "angry": ["browDownLeft", "browDownRight", "noseSneerLeft"],
    "surprised": ["eyeWideLeft", "browOuterUpLeft", "browInnerUp"],
    "fearful": ["browInnerUp", "eyeWideRight", "mouthStretchLeft"],
    "disgusted": ["noseSneerLeft", "noseSneerRight", "mouthUpperUpLeft"],
    "contempt": ["mouthSmileLeft", "mouthDimpleLeft"],
}


@pytest.mark.parametrize("emotion", sorted(EXPECTED))
def test_emotion_presets_raise_their_channels_with_intensity(emotion):
    x = np.random.default_rng(1).normal(0, 0.05, 16000 * 2).astype(np.float32)
    means = {lvl: perform(MAPABA, x, 16000, emotion=emotion, intensity=lvl, rng=0).weights.mean(axis=0)
             for lvl in (1, 2, 3)}
    base = perform(MAPABA, x, 16000, rng=0).weights.mean(axis=0)
    from rig_mapping.arkit import ARKIT_INDEX

    for ch in EXPECTED[emotion]:
        i = ARKIT_INDEX[ch]
        assert means[1][i] > base[i] + 0.02, f"{emotion}:1 does not raise {ch}"
        assert means[1][i] < means[2][i] < means[3][i], f"{emotion} {ch} does not grow with intensity"
    if emotion == "contempt":  # the one asymmetric expression
        assert means[3][ARKIT_INDEX["mouthSmileLeft"]] > means[3][ARKIT_INDEX["mouthSmileRight"]] + 0.2


def test_emotion_presets_are_complete_with_prosody():
    for e in EMOTIONS:
        for lvl in (1, 2, 3):
            p = emotion_preset(e, lvl)
            assert set(p.prosody) == {"rate", "pitch", "pitch_range", "energy", "effort", "tremor", "breath"}
            SpeechProsody.from_dict(p.prosody)  # every preset is a valid synthesizer setting
    assert emotion_preset("sad", 3).prosody["rate"] < 1 < emotion_preset("happy", 3).prosody["pitch_range"]
    # the cues the corpus augmentation cannot hide: tense vs. soft voice, a trembling voice
    assert emotion_preset("sad", 3).prosody["effort"] < 1 < emotion_preset("angry", 3).prosody["effort"]
    assert emotion_preset("fearful", 3).prosody["tremor"] > emotion_preset("fearful", 1).prosody["tremor"] > 0
    with pytest.raises(ValueError, match="unknown emotion"):
        emotion_preset("grumpy", 1)
    with pytest.raises(ValueError, match="1, 2 or 3"):
        emotion_preset("happy", 4)


def test_style_vector_round_trip_and_sampling_ranges():
    rng = np.random.default_rng(0)
    styles = [sample_speaker_style(rng) for _ in range(50)]
    for s in styles:
        v = s.to_vector()
        assert v.shape == (len(STYLE_FIELDS),) and v.dtype == np.float32
        back = SpeakerStyle.from_vector(v)
        assert np.allclose(back.to_vector(), v)
        for name, (lo, hi) in STYLE_RANGES.items():
            assert lo <= getattr(s, name) <= hi
    assert len({s.to_vector().tobytes() for s in styles}) == 50
    with pytest.raises(ValueError, match="vector has"):
        SpeakerStyle.from_vector(np.zeros(3))


def test_speaker_styles_change_the_performance():
    wide = SpeakerStyle(articulation=1.3, jaw_emphasis=1.3, head_energy=1.6)
    small = SpeakerStyle(articulation=0.75, jaw_emphasis=0.75, head_energy=0.4)
    a = perform(MAPABA, None, 16000, style=wide, rng=0)
    b = perform(MAPABA, None, 16000, style=small, rng=0)
    assert a.channel("jawOpen").max() > 1.4 * b.channel("jawOpen").max()
    assert np.abs(a.head[:, :3]).mean() > 2 * np.abs(b.head[:, :3]).mean()


def test_output_ranges_and_silence_without_phones():
    x = np.random.default_rng(0).normal(0, 0.2, 16000 * 20).astype(np.float32)
    m = perform([], x, 16000, rng=0, head_motion=1.0)
    assert m.n_frames == 600
    assert np.degrees(np.abs(m.head[:, :3])).max() < 10
    assert np.abs(m.head[:, 3:]).max() < 0.02  # metres
    assert m.weights.min() >= 0 and m.weights.max() <= 1
    assert np.median(lip_gap(m)) < 0.5  # no phones: no talking
    assert _blinks_per_minute(m) > 5
    still = perform([], x, 16000, rng=0, head_motion=0.0)
    assert np.abs(still.head).max() == 0


def _speaking(duration: float, fps: float, accents: list[tuple[float, float]]):
    from motion_server.performer.prosody import Prosody

    n = int(duration * fps)
    return Prosody(speech=np.ones(n, bool), energy=np.full(n, 0.6, np.float32), accents=accents,
                   phrase_starts=[0.0], phrase_ends=[duration], pauses=[])


def test_brow_raises_and_nods_follow_pitch_accents():
    from motion_server.performer.nonverbal import brow_curves, head_curves

    fps, accents = 30.0, [(1.0, 1.5), (3.0, 1.5), (5.0, 1.5), (7.0, 1.5)]
    with_acc = _speaking(9.0, fps, accents)
    t = np.arange(int(9.0 * fps)) / fps
    near = np.zeros(t.size, bool)
    for at, _ in accents:
        near |= (t > at - 0.2) & (t < at + 1.0)
    brow_near, brow_far, nod_near, nod_far = [], [], [], []
    for seed in range(12):
        brows = brow_curves(t.size, fps, with_acc, 1.0, np.random.default_rng(seed))[:, 0]
        brow_near.append(brows[near].mean())
        brow_far.append(brows[~near].mean())
        # the head moves (nods, new postures) on accents and rests between them: pitch speed in rad/s
        speed = np.abs(np.gradient(head_curves(t.size, fps, with_acc, 1.0, np.random.default_rng(seed))[:, 0]))
        nod_near.append(speed[near].mean() * fps)
        nod_far.append(speed[~near].mean() * fps)
    assert np.mean(brow_near) > 5 * max(np.mean(brow_far), 1e-3), (brow_near, brow_far)
    assert np.mean(nod_near) > 2 * np.mean(nod_far) and np.mean(nod_near) > np.radians(2.0), (nod_near, nod_far)


def test_eyes_make_saccades_between_fixations():
    m = perform([], np.zeros(16000 * 30, np.float32), 16000, rng=4, fps=60.0, blink_rate=0)
    yaw = m.channel("eyeLookOutLeft") - m.channel("eyeLookInLeft")
    speed = np.abs(np.diff(yaw)) * m.fps  # eyeLook units per second
    jumps, _ = find_peaks(speed, height=1.0, distance=int(0.1 * m.fps))
    assert 5 <= len(jumps) <= 120, f"{len(jumps)} saccades in 30 s"
    assert np.mean(speed < 0.3) > 0.8, "the eyes should rest (fixate) most of the time"


def test_a_breath_opens_the_mouth_slightly_in_a_long_pause():
    phones = seq("SIL:0.3 AA:0.3 N:0.1 SIL:1.2 M:0.1 AA:0.3 SIL:0.3")
    m = perform(phones, None, 16000, rng=0, blink_rate=0)
    pause = phones[3]
    jaw = m.channel("jawOpen")
    early = jaw[int((pause.start + 0.35) * m.fps)]
    inhale = jaw[int((pause.end - 0.3) * m.fps)]
    assert inhale > early + 0.03, f"jawOpen {early:.3f} -> {inhale:.3f}: no inhalation before the next phrase"
