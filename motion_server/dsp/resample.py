"""The one resampler: soxr's high-quality band-limited converter (what ``librosa.resample`` runs by
default), whole clips or block by block."""

from __future__ import annotations

import math

import numpy as np


def resampled_length(n: int, sr_in: int, sr_out: int) -> int:
    """Samples after resampling ``n`` samples: rounded up, as a polyphase resampler gives."""
    return int(math.ceil(n * int(sr_out) / int(sr_in)))


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Mono ``x`` from ``sr_in`` to ``sr_out`` Hz, float32, ``resampled_length`` samples long."""
    import soxr

    y = np.ascontiguousarray(np.asarray(x, np.float32).reshape(-1))
    if int(sr_in) == int(sr_out):
        return y
    out = soxr.resample(y, int(sr_in), int(sr_out), quality="HQ")
    n = resampled_length(y.size, sr_in, sr_out)
    # soxr rounds the length to nearest; pad or trim to the fixed rule so frame counts never depend on it
    return out[:n] if out.size >= n else np.pad(out, (0, n - out.size))


class StreamResampler:
    """Block-wise ``resample`` for long clips: memory is the output, not copies of the whole input. All
    blocks together are ``resampled_length`` samples long, as ``resample`` gives."""

    def __init__(self, sr_in: int, sr_out: int) -> None:
        import soxr

        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self._rs = soxr.ResampleStream(self.sr_in, self.sr_out, 1, dtype="float32", quality="HQ")
        self._n_in = self._n_out = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        self._n_in += x.size
        out = self._rs.resample_chunk(x, last=False)
        self._n_out += out.size
        return out

    def flush(self) -> np.ndarray:
        """The rest, padded or trimmed so the whole stream has the fixed length rule's samples."""
        out = self._rs.resample_chunk(np.zeros(0, np.float32), last=True)
        want = resampled_length(self._n_in, self.sr_in, self.sr_out) - self._n_out
        if want < 0:  # soxr's rounding gave one more than the rule before the last block (never seen)
            raise AssertionError("resampled stream overran its length")
        return out[:want] if out.size >= want else np.pad(out, (0, want - out.size))
