"""``motion_server.dsp``: the one resampler and the Gaussian smoothing every layer shares, in numpy and
soxr so a worker process need not import scipy.signal or scipy.ndimage (0.5-1 s each). The smoothing
must give scipy.ndimage's ``gaussian_filter1d``; the resampler must give librosa's default (the model's
training features went through it; the paths that used scipy's resample_poly before now differ from it
by a resampler's rounding, checked by the real-speech eval numbers in TRAINING.md)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from motion_server.dsp import StreamResampler, gaussian_filter1d, resample
from motion_server.dsp.resample import resampled_length


@pytest.mark.parametrize("mode", ["reflect", "nearest", "mirror", "wrap"])
@pytest.mark.parametrize("n", [1, 2, 5, 40, 301])
@pytest.mark.parametrize("sigma", [0.4, 1.5, 6.0, 30.0])  # 30: the kernel is far longer than short signals
def test_gaussian_matches_scipy(mode: str, n: int, sigma: float) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(n)
    for x, axis in ((rng.normal(size=(n, 7)).astype(np.float32), 0), (rng.normal(size=(3, n)), -1)):
        ours = gaussian_filter1d(x, sigma, axis=axis, mode=mode)
        ref = ndimage.gaussian_filter1d(x, sigma, axis=axis, mode=mode)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 if x.dtype == np.float32 else 1e-12)


def test_gaussian_smooths_and_keeps_the_level() -> None:
    step = np.r_[np.zeros(50), np.ones(50)]
    out = gaussian_filter1d(step, 3.0, mode="nearest")
    assert out[0] == 0.0 and out[-1] == 1.0  # flat ends stay put
    assert 0.3 < out[49] < 0.5 < out[50] < 0.7 and abs(out[49] + out[50] - 1) < 1e-12  # spread, symmetric
    assert np.all(np.diff(out) >= 0)


def test_gaussian_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="mode"):
        gaussian_filter1d(np.zeros(4), 1.0, mode="constant-ish")
    with pytest.raises(ValueError, match="sigma"):
        gaussian_filter1d(np.zeros(4), 0.0)


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (22050, 16000), (8000, 16000), (48000, 8000)])
def test_resample_is_librosas_default(sr_in: int, sr_out: int) -> None:
    librosa = pytest.importorskip("librosa")
    t = np.arange(int(1.3 * sr_in) + 7) / sr_in
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    ours = resample(x, sr_in, sr_out)
    ref = librosa.resample(x, orig_sr=sr_in, target_sr=sr_out)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (resampled_length(x.size, sr_in, sr_out),)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_resampling_keeps_the_pitch_and_drops_what_the_new_rate_cannot_hold() -> None:
    sr = 48000
    t = np.arange(sr) / sr
    x = (np.sin(2 * np.pi * 300 * t) + np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    y = resample(x, sr, 8000)  # Nyquist 4 kHz: the 6 kHz tone must go, not fold back to 2 kHz
    spec = np.abs(np.fft.rfft(y[1000:-1000] * np.hanning(y.size - 2000)))
    freqs = np.fft.rfftfreq(y.size - 2000, 1 / 8000)
    assert abs(freqs[spec.argmax()] - 300) < 5
    assert spec[np.abs(freqs - 2000) < 50].max() < 1e-3 * spec.max()


def test_stream_resampler_matches_the_whole_clip() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.2, 44100 * 2).astype(np.float32)
    rs = StreamResampler(44100, 16000)
    parts = [rs.push(x[i: i + 5000]) for i in range(0, x.size, 5000)] + [rs.flush()]
    streamed, whole = np.concatenate(parts), resample(x, 44100, 16000)
    assert streamed.size == whole.size == resampled_length(x.size, 44100, 16000)  # frame counts agree
    np.testing.assert_allclose(streamed[:-8], whole[:-8], rtol=0, atol=1e-5)


def test_generating_motion_imports_no_scipy() -> None:
    """What a worker process loads to animate a line: no scipy (its signal/ndimage/fft imports cost each
    worker 0.5-1 s before its first line on a 2-core machine)."""
    code = (
        "import sys, numpy as np\n"
        "from motion_server.engine.registry import create_engine\n"
        "eng = create_engine('diffusion')\n"
        "t = np.arange(22050) / 22050\n"
        "eng.generate((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 22050)\n"
        "bad = sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.'))\n"
        "print(len(bad), bad[:5])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == "0", out.stdout
