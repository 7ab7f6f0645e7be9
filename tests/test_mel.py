"""The model's log-mel rows come from ``motion_server.audio.mel``, not librosa's feature module (whose first
use costs every process ~1.5 s of imports). They must stay what the checkpoints were trained on: librosa's
``melspectrogram`` and ``filters.mel``."""

from __future__ import annotations

import numpy as np
import pytest

from motion_server.audio.mel import mel_filters, mel_power

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 512, 80, 40.0, 7600.0),  # the log-mel features
                                                        (16000, 400, 80, 0.0, None),  # Whisper tiny / base
                                                        (22050, 1024, 128, 0.0, None)])
def test_filters_match_librosa(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> None:
    ours = mel_filters(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7 * float(ref.max()))


@pytest.mark.parametrize("n", [400, 401, 1234, 16000 * 3 + 17, 16000 * 25 + 5])  # the last spans two STFT blocks
def test_log_mel_matches_librosa(n: int) -> None:
    rng = np.random.default_rng(n)
    t = np.arange(n) / 16000
    y = (0.3 * np.sin(2 * np.pi * 180 * t * (1 + t)) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    ours = mel_power(y, 16000, 512, 160, 80, 400, 40.0, 7600.0)
    with np.errstate(all="ignore"):
        ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=80,
                                             fmin=40.0, fmax=7600.0, power=2.0, center=True)
    assert ours.shape == ref.shape == (80, 1 + n // 160)
    # the features are the log: they agree far below anything the model can tell apart
    assert np.abs(np.log(ours + 1e-5) - np.log(ref + 1e-5)).max() < 1e-4


def test_mel_refuses_stereo() -> None:
    with pytest.raises(ValueError, match="mono"):
        mel_power(np.zeros((2, 1000), np.float32), 16000, 512, 160, 80)
