"""Everything that is not lip sync: blinks, gaze, brow raises, head motion and breathing.

Each function returns curves to add to the performance; all randomness comes from the generator passed
in, so a seed reproduces a performance exactly.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .channels import idx, idxs
from .prosody import Prosody


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# -- blinks ----------------------------------------------------------------------------------------------


def blink_times(duration: float, rate_per_min: float, rng: np.random.Generator,
                phrase_starts: list[float] = ()) -> list[float]:
    """Blink peak times: a renewal process (gamma intervals, so blinks neither cluster nor tick like a
    clock) at ``rate_per_min``, plus frequent blinks just before a phrase starts."""
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
        # phrase blinks replace nearby scheduled ones rather than adding a double blink
        if bt > 0.1 and rng.random() < 0.45 and all(abs(bt - x) > 0.6 for x in times):
            times.append(bt)
    return sorted(times)


def blink_curves(n_frames: int, fps: float, times: list[float], rng: np.random.Generator) -> np.ndarray:
    """[n_frames, 2] eyeBlink left/right. Each blink closes fast (~35% of it) and reopens slower; the
    eyes move together within a few ms, the right eye a touch weaker or later at random."""
    out = np.zeros((n_frames, 2), np.float32)
    t = np.arange(n_frames) / fps
    for bt in times:
        dur = float(rng.uniform(0.10, 0.25))
        peak_t = round(bt * fps) / fps  # peak on a frame so a short blink is never lost between frames
        amp = float(rng.uniform(0.85, 1.0))
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
    """[n_frames, 3] (browInnerUp, browOuterUpLeft, browOuterUpRight): raises on pitch accents."""
    out = np.zeros((n_frames, 3))
    t = np.arange(n_frames) / fps
    for at, strength in prosody.accents:
        if rng.random() > 0.6:  # not every accent moves the brows
            continue
        amp = activity * strength * float(rng.uniform(0.08, 0.2))
        rise, fall = 0.12, float(rng.uniform(0.25, 0.45))
        x = t - at
        shape = np.where(x < 0, _smoothstep(1 + x / rise), _smoothstep(1 - x / fall))
        inner_only = rng.random() < 0.3
        out[:, 0] += amp * shape
        if not inner_only:
            out[:, 1] += 0.8 * amp * shape
            out[:, 2] += 0.8 * amp * shape
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


def head_curves(n_frames: int, fps: float, prosody: Prosody, energy_scale: float,
                rng: np.random.Generator) -> np.ndarray:
    """[n_frames, 6] pitch/yaw/roll (radians) and x/y/z (metres): slow sway, more while speaking, nods on
    accents, a small settle at phrase ends, a lift on inhalation before a phrase."""
    t = np.arange(n_frames) / fps
    deg = np.pi / 180
    head = np.zeros((n_frames, 6))
    talk = gaussian_filter1d(prosody.speech.astype(float), sigma=max(0.4 * fps, 1.0)) if n_frames else np.zeros(0)
    gain = 0.55 + 0.45 * talk
    for k, (sd, amp) in enumerate(((1.0, 1.3 * deg), (1.4, 1.8 * deg), (1.2, 0.9 * deg),
                                   (1.5, 0.002), (1.2, 0.0015), (1.5, 0.002))):
        head[:, k] = amp * _smooth_noise(n_frames, fps, sd, rng) * gain
    # faster speech-linked jitter on pitch/yaw
    head[:, 0] += 0.4 * deg * _smooth_noise(n_frames, fps, 0.15, rng) * talk
    head[:, 1] += 0.4 * deg * _smooth_noise(n_frames, fps, 0.15, rng) * talk
    for at, strength in prosody.accents:
        if rng.random() < 0.65:
            head[:, 0] += strength * float(rng.uniform(0.8, 2.0)) * deg * _damped(t, at - 0.05, 0.7, 0.35)
    for et in prosody.phrase_ends:
        head[:, 0] += float(rng.uniform(0.3, 1.0)) * deg * _damped(t, et - 0.15, 1.0, 0.5)
    for a, b in prosody.pauses:
        if b - a >= 0.5:
            lift = np.clip(1 - np.abs(t - (b - 0.25)) / 0.3, 0, 1)
            head[:, 0] -= 0.6 * deg * lift
            head[:, 4] += 0.001 * lift
    return (head * energy_scale).astype(np.float32)


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
