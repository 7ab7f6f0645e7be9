"""Everything that is not lip sync: blinks, gaze, brow raises, head motion and breathing.

Each function returns curves to add to the performance; all randomness comes from the generator passed
in, so a seed reproduces a performance exactly.
"""

from __future__ import annotations

import numpy as np

from motion_server.dsp import gaussian_filter1d

from .calibration import cal, soft_limit_head
from .channels import idx, idxs
from .prosody import Prosody


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# -- blinks ----------------------------------------------------------------------------------------------


def blink_times(duration: float, rate_per_min: float, rng: np.random.Generator,
                phrase_starts: list[float] = ()) -> list[float]:
    """Blink peak times: a renewal process (gamma intervals, so blinks neither cluster nor tick like a
    clock) at ``rate_per_min``; about half the phrase onsets pull the nearest blink to just before them
    (people blink as they start to speak), which moves blinks without changing the rate."""
    rate = max(float(rate_per_min), 0.0) / 60.0
    times: list[float] = []
    if rate > 0:
        shape = 3.0
        t = float(rng.uniform(0.2, 1.0 / rate))
        while t < duration:
            times.append(t)
            t += max(0.35, float(rng.gamma(shape, 1.0 / (rate * shape))))
    for s in phrase_starts:
        bt = s - 0.08
        if bt <= 0.1 or rng.random() >= 0.5 or not times:
            continue
        near = int(np.argmin([abs(x - bt) for x in times]))
        others = times[:near] + times[near + 1 :]
        if abs(times[near] - bt) < 1.5 and all(abs(bt - x) > 0.6 for x in others):
            times[near] = bt
    return sorted(times)


def blink_durations(k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` blink durations in seconds, 10%-to-10% of the lid's travel as motion_stats measures them:
    log-normal with the real blinks' median and 10th/90th percentiles (calibration.json)."""
    med = cal("blink.duration_ms_median")
    sig_lo = np.log(med / cal("blink.duration_ms_p10")) / 1.2816
    sig_hi = np.log(cal("blink.duration_ms_p90") / med) / 1.2816
    z = rng.normal(0, 1, k)
    ms = med * np.exp(np.where(z < 0, sig_lo, sig_hi) * z)  # real blinks have a longer slow tail
    lo, hi = cal("blink.duration_ms_limits")
    return np.clip(ms, lo, hi) / 1000.0


# the smoothstep flank rises from 10 % to 100 % over 1 - 0.196 of its length
_SMOOTHSTEP_10 = 0.19638


def blink_curves(n_frames: int, fps: float, times: list[float], rng: np.random.Generator) -> np.ndarray:
    """[n_frames, 2] eyeBlink left/right. Each blink closes fast (~35% of it) and reopens slower; the
    eyes move together within a few ms, the right eye a touch weaker or later at random."""
    out = np.zeros((n_frames, 2), np.float32)
    t = np.arange(n_frames) / fps
    durs = blink_durations(len(times), rng) / (1 - _SMOOTHSTEP_10)  # flank lengths from measured durations
    lo, hi = cal("blink.peak_low"), cal("blink.peak_high")
    for bt, dur in zip(times, durs, strict=True):
        peak_t = round(bt * fps) / fps  # peak on a frame so a short blink is never lost between frames
        amp = float(rng.uniform(lo, hi))
        close, reopen = 0.35 * dur, 0.65 * dur
        for eye, (dt, a) in enumerate(((0.0, amp), (float(rng.normal(0, 0.004)), amp * rng.uniform(0.95, 1.0)))):
            x = t - (peak_t + dt)
            shape = np.where(x < 0, _smoothstep(1 + x / close), _smoothstep(1 - x / reopen))
            out[:, eye] = np.maximum(out[:, eye], a * shape)
    return out


# -- gaze ------------------------------------------------------------------------------------------------


def gaze_curves(n_frames: int, fps: float, saccade_rate: float, spread: float,
                rng: np.random.Generator) -> np.ndarray:
    """[n_frames, 2] gaze (yaw, pitch) in eyeLook units (1 ~ the eye's full range); +yaw = towards the
    character's left, +pitch = up. Fixations of random length joined by 30-60 ms saccades; most shifts
    return near the listener (centre)."""
    gaze = np.zeros((n_frames, 2))
    t = np.arange(n_frames) / fps
    cur = np.zeros(2)
    now = 0.0
    duration = n_frames / fps
    rate = max(saccade_rate, 0.05)
    while True:
        now += float(rng.exponential(1.0 / rate)) + 0.15
        if now >= duration:
            break
        if rng.random() < 0.55:
            new = rng.normal(0, 0.04, 2)
        else:
            new = np.array([rng.normal(0, 0.16), rng.normal(-0.03, 0.1)]) * spread
        new = np.clip(new, -0.45, 0.45)
        # shifts are >= 0.15 s apart and saccades <= 60 ms, so adding steps never overlaps
        step = _smoothstep((t - now) / float(rng.uniform(0.03, 0.06)))[:, None]
        gaze += step * (new - cur)[None, :]
        cur = new
    # fixational drift: tiny slow wander
    drift = gaussian_filter1d(rng.normal(0, 1, (n_frames, 2)), sigma=max(1.0, 0.3 * fps), axis=0)
    drift *= 0.015 / (drift.std() + 1e-9) if n_frames > 2 else 0.0
    return gaze + drift


def gaze_to_channels(gaze: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Split signed gaze into the eight eyeLook channels; returns (indices, values [T, 8])."""
    yaw, pitch = gaze[:, 0], gaze[:, 1]
    left, right = np.clip(yaw, 0, None), np.clip(-yaw, 0, None)
    up, down = np.clip(pitch, 0, None), np.clip(-pitch, 0, None)
    names = ["eyeLookOutLeft", "eyeLookInRight", "eyeLookInLeft", "eyeLookOutRight",
             "eyeLookUpLeft", "eyeLookUpRight", "eyeLookDownLeft", "eyeLookDownRight"]
    vals = np.stack([left, left, right, right, up, up, down, down], axis=1)
    return [idx(n) for n in names], vals.astype(np.float32)


# -- brows -----------------------------------------------------------------------------------------------


def brow_curves(n_frames: int, fps: float, prosody: Prosody, activity: float,
                rng: np.random.Generator) -> np.ndarray:
    """[n_frames, 3] (browInnerUp, browOuterUpLeft, browOuterUpRight): raises on pitch accents (on phrase
    onsets where the audio gives no accents), sized so neutral speech moves the brows as much as real
    speakers' (calibration.json, brows)."""
    out = np.zeros((n_frames, 3))
    t = np.arange(n_frames) / fps
    events = prosody.accents or [(s, 1.0) for s in prosody.phrase_starts]
    # outer brows move more than the inner in the real takes (outer/inner std ratio); every raise moves
    # both, in a proportion that varies from raise to raise
    outer = cal("brows.outer_up_std") / cal("brows.inner_up_std")
    gain = activity * cal("brows.unit_gain")
    for at, strength in events:
        if rng.random() > 0.6:  # not every accent moves the brows
            continue
        amp = gain * strength * float(rng.uniform(0.04, 0.1))
        rise, fall = 0.12, float(rng.uniform(0.25, 0.45))
        x = t - at
        shape = np.where(x < 0, _smoothstep(1 + x / rise), _smoothstep(1 - x / fall))
        out[:, 0] += amp * shape
        side = outer * amp * float(rng.uniform(0.5, 1.5)) * shape
        out[:, 1] += side
        out[:, 2] += side
    return out


# -- head ------------------------------------------------------------------------------------------------


def _smooth_noise(n: int, fps: float, sigma_s: float, rng: np.random.Generator) -> np.ndarray:
    sig = max(sigma_s * fps, 0.5)
    x = gaussian_filter1d(rng.normal(0, 1, n + int(6 * sigma_s * fps)), sigma=sig)
    x = x[-n:] if n else x[:0]
    # unit variance from the filter's known gain (white noise through a Gaussian of width sig), not the
    # clip's own std: a clip shorter than the smoothing is nearly constant and dividing by its tiny std
    # turned it into radians of head turn
    return x * np.sqrt(2.0 * np.sqrt(np.pi) * sig) if n > 3 else np.zeros(n)


def _damped(t: np.ndarray, t0: float, period: float, decay: float) -> np.ndarray:
    """A nod: goes down, slightly overshoots back up, settles."""
    x = np.clip(t - t0, 0.0, 12 * decay)
    return np.where(t >= t0, np.sin(2 * np.pi * x / period) * np.exp(-x / decay), 0.0)


def _posture_events(prosody: Prosody, duration: float, rng: np.random.Generator) -> list[tuple[float, str]]:
    """When the head takes a new posture: with each phrase onset, again on accents (or every ~2.5 s
    without any) inside long phrases, and a settle towards rest in each pause."""
    events: list[tuple[float, str]] = []
    for k, (a, b) in enumerate(zip(prosody.phrase_starts, prosody.phrase_ends, strict=True)):
        events.append((a - 0.1, "turn"))  # the head moves with the voice's onset
        last = a
        inside = [at for at, _ in prosody.accents if a + 1.5 < at < b - 0.6]
        if not prosody.accents:
            inside = list(np.arange(a + 2.5, b - 0.6, 2.5))
        for at in inside:
            if at - last >= float(rng.uniform(1.6, 3.0)):
                events.append((at - 0.1, "turn"))
                last = at
        if k < len(prosody.pauses) and prosody.pauses[k][1] - prosody.pauses[k][0] >= 0.5:
            events.append((b + 0.15, "settle"))
    if prosody.phrase_ends and prosody.phrase_ends[-1] < duration - 0.5:
        events.append((prosody.phrase_ends[-1] + 0.15, "settle"))
    return sorted(events)


def head_curves(n_frames: int, fps: float, prosody: Prosody, energy_scale: float,
                rng: np.random.Generator, head_motion: float = 1.0) -> np.ndarray:
    """[n_frames, 6] pitch/yaw/roll (radians) and x/y/z (metres).

    Rotation, per axis in units of the calibrated neutral std (calibration.json, head): a new posture
    (turn/tilt) at each phrase onset and on accents inside long phrases, settling towards rest in
    pauses (postures are drawn around rest, so there is no drift over minutes); nods on pitch accents
    and a small one at phrase ends; a slow sway, larger while speaking. No frame-rate noise. A soft
    limit keeps every angle within +/-limit_deg at ``energy_scale`` (the speaker and emotion); the user's
    ``head_motion`` scales the result exactly (0 freezes the head, 2 doubles it). Translation follows the rotation about the neck, plus
    a slow torso sway."""
    r_post, r_nod, r_sway, r_body = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 4))
    t = np.arange(n_frames) / fps
    duration = n_frames / fps
    unit = np.zeros((n_frames, 3))
    if n_frames == 0:
        return np.zeros((0, 6), np.float32)
    talk = gaussian_filter1d(prosody.speech.astype(float), sigma=max(0.4 * fps, 1.0))

    # postures: smoothstep moves from the current pose to a new one (steps add, so overlaps are fine)
    cur = np.zeros(3)
    for at, kind in _posture_events(prosody, duration, r_post):
        if kind == "turn":
            # about unit variance, lighter-tailed than a normal draw (a clip holds only a few postures, so
            # one extreme draw would decide its whole std), and more often across rest than not
            sign = np.where(r_post.random(3) < 0.7, -np.sign(cur + 1e-9), r_post.choice([-1.0, 1.0], 3))
            new = sign * r_post.uniform(0.5, 1.5, 3)
            move = float(r_post.uniform(0.45, 0.9))
        else:
            new = cur * 0.35
            move = float(r_post.uniform(0.6, 1.0))
        unit += _smoothstep((t - at) / move)[:, None] * (new - cur)[None, :]
        cur = new

    # nods on accents: mostly pitch, with a little turn and tilt
    for at, strength in prosody.accents:
        if r_nod.random() < 0.7:
            nod = _damped(t, at - 0.05, float(r_nod.uniform(0.6, 0.8)), 0.3)
            amp = strength * float(r_nod.uniform(0.5, 1.1))
            unit[:, 0] += amp * nod
            unit[:, 1:] += 0.25 * amp * r_nod.normal(0, 1, 2)[None, :] * nod[:, None]
    for et in prosody.phrase_ends:
        unit[:, 0] += float(r_nod.uniform(0.2, 0.6)) * _damped(t, et - 0.15, 1.0, 0.5)

    # sway: slow, larger while speaking
    gain = 0.5 + 0.5 * talk
    for k in range(3):
        unit[:, k] += 0.45 * _smooth_noise(n_frames, fps, 0.7, r_sway) * gain

    deg = np.pi / 180
    axes = ("pitch", "yaw", "roll")
    std = np.array([cal(f"head.std_deg.{a}") * cal("head.unit_gain")[a] for a in axes])
    ang = soft_limit_head(unit * std[None, :] * energy_scale)  # before --head-motion: range under 2 x limit
    head = np.zeros((n_frames, 6))
    head[:, :3] = ang * deg * head_motion
    # translation: the head turns about the upper neck, below its origin (HEAD_CHANNELS: +pitch nods the
    # chin down, moving the head forward, +z; +roll tilts to the right shoulder, -x)
    pivot = cal("head.neck_pivot_m")
    head[:, 5] = pivot * np.sin(head[:, 0])
    head[:, 3] = -pivot * np.sin(head[:, 2])
    head[:, 4] = pivot * (np.cos(head[:, 0]) + np.cos(head[:, 2]) - 2)
    sway = cal("head.body_sway_mm") / 1000.0 * energy_scale * head_motion
    head[:, 3] += sway * _smooth_noise(n_frames, fps, 2.0, r_body)
    head[:, 5] += sway * _smooth_noise(n_frames, fps, 2.0, r_body)
    return head.astype(np.float32)


# -- breathing -------------------------------------------------------------------------------------------


def breath_curves(n_frames: int, fps: float, prosody: Prosody, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Inhalation in long pauses (and before the first phrase): the mouth opens slightly ~0.3 s before
    the next phrase. Returns {channel index: curve to add}."""
    t = np.arange(n_frames) / fps
    bump = np.zeros(n_frames)
    onsets = [b for a, b in prosody.pauses if b - a >= 0.5]
    if prosody.phrase_starts and prosody.phrase_starts[0] >= 0.5:
        onsets.insert(0, prosody.phrase_starts[0])
    for b in onsets:
        centre, width = b - 0.3, 0.16
        bump = np.maximum(bump, float(rng.uniform(0.6, 1.0)) * np.clip(1 - np.abs(t - centre) / width, 0, 1))
    bump = _smoothstep(bump)
    out = {idx("jawOpen"): 0.06 * bump}
    for i in idxs("mouthLowerDown"):
        out[i] = 0.04 * bump
    for i in idxs("noseSneer"):
        out[i] = 0.03 * bump
    return out
