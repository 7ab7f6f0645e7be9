"""The one audio decoder: any common container -> mono float32 at a chosen sample rate.

Every caller (CLI, ``talkrig animate``, the server's engine worker, eval) decodes through
:func:`load_audio`, and it treats every file as possibly hostile:

1. The format is recognised from the file's first bytes, never from its name, and only formats on a
   whitelist are decoded: wav/flac/ogg/aiff/mp3 with libsndfile (soundfile); m4a/mp4, aac, ogg/opus,
   webm/mkv, caf and wma with the ffmpeg binary, always with the demuxer forced (``-f``), so ffmpeg never
   guesses a format that reads other files (concat scripts, playlists).
2. Header facts (sample rate, channels, duration) are checked *before* any sample is decoded: rates
   outside 4-384 kHz, more than 32 channels, or a claimed duration above the caller's limit are refused.
3. Decoding reads in blocks and stops at the caller's limit, whatever the header claimed; ffmpeg runs
   with a wall-clock limit, a cancel check and a byte cap on its output, in its own process group that
   is killed on timeout, cancel, error or exit (and by the kernel if this process dies).
4. A WAV whose header declares more samples than the file holds (an interrupted recording or copy) is
   refused with a one-line error that says how to keep what is there; silent truncation is never
   accepted.

Upload bytes given to ffmpeg live in an anonymous in-memory file (Linux ``memfd``), so nothing is left
on disk by a kill; elsewhere a private temp folder is used and :func:`sweep_stale_temp` removes folders
left by killed processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motion_server.dsp import StreamResampler, resample
from motion_server.options import SAMPLE_RATE

log = logging.getLogger("talkrig.audio")

MIN_SAMPLE_RATE = 4_000  # below: telephone-band at best; a 1 Hz header is an attack, not audio
MAX_SAMPLE_RATE = 384_000  # the highest rate real converters record
MAX_CHANNELS = 32
DEFAULT_TIMEOUT_S = 120.0  # wall-clock limit for one ffmpeg probe + decode
BLOCK_FRAMES = 1 << 16
# Above this many mono source samples, decode and resample block by block instead of the whole clip at
# once (memory: the output, not copies of the input): 2^23 is ~3 min at 48 kHz.
WHOLE_RESAMPLE_MAX = 1 << 23
TEMP_PREFIX = "talkrig-audio-"

# libsndfile reads these; the ffmpeg demuxer is the fallback for codecs libsndfile lacks
SOUNDFILE_FORMATS = {"wav": "wav", "rf64": "wav", "flac": "flac", "ogg": "ogg", "aiff": "aiff", "mp3": "mp3"}
FFMPEG_FORMATS = ("mov", "aac", "matroska", "caf", "asf")  # m4a/mp4, adts, webm/mkv, caf, wma
SUPPORTED = "wav, flac, ogg/opus, aiff, mp3, m4a/mp4/aac, webm/mkv, caf, wma"


class AudioError(ValueError):
    """Audio that cannot be used; the message says why and what to do."""


class AudioTooLong(AudioError):
    """The audio (as its header claims, or as decoded) is longer than the caller's limit."""

    def __init__(self, seconds: float, limit: float, at_least: bool = False) -> None:
        self.seconds = seconds
        self.limit = limit
        self.at_least = at_least
        more = "at least " if at_least else ""
        super().__init__(f"audio is {more}{seconds:.1f} s long; the limit is {limit:g} s (split it or raise the limit)")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, checked before decoding. ``seconds`` is None when it does not say."""

    format: str
    sample_rate: int
    channels: int
    seconds: float | None


def audio_sha256(data: bytes | str | Path) -> str:
    b = Path(data).read_bytes() if isinstance(data, (str, Path)) else data
    return hashlib.sha256(b).hexdigest()


# -- format sniffing ---------------------------------------------------------------------------------


def sniff_format(head: bytes) -> str | None:
    """The container of a file from its first bytes (>= 12 of them), or None when not whitelisted."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] in (b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "rf64"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"caff":
        return "caf"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "asf"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0: AAC
            return "aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # MPEG audio frame sync with a layer
            return "mp3"
    return None


def _check_facts(fmt: str, rate: float, channels: int, seconds: float | None, max_seconds: float | None) -> AudioInfo:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"audio header says {rate:g} Hz; only {MIN_SAMPLE_RATE // 1000}-{MAX_SAMPLE_RATE // 1000} kHz "
                         "audio is accepted (the file is damaged or not really audio; re-export it)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"audio header says {channels} channels; 1-{MAX_CHANNELS} are accepted (re-export it as mono)")
    if seconds is not None and max_seconds is not None and seconds > max_seconds:
        raise AudioTooLong(seconds, max_seconds)
    return AudioInfo(fmt, int(rate), int(channels), seconds)


# -- WAV truncation -----------------------------------------------------------------------------------


def _wav_declared_vs_present(read_at: Callable[[int, int], bytes], size: int) -> tuple[int, int] | None:
    """(declared data bytes, bytes present) of a RIFF/WAVE file's data chunk, or None when the header
    gives no usable length (streamed WAVs write 0 or 0xFFFFFFFF)."""
    pos = 12
    for _ in range(64):  # a handful of chunks precede 'data' in real files; more is not a WAV we want
        hdr = read_at(pos, 8)
        if len(hdr) < 8:
            return None
        cid, n = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if cid == b"data":
            if n in (0, 0xFFFFFFFF) or n >= 0xFFFFFF00:
                return None
            return n, max(size - pos - 8, 0)
        pos += 8 + n + (n & 1)
    return None


# -- the decoder ------------------------------------------------------------------------------------


class _Source:
    """Bytes or a file path, with the few reads the decoder needs."""

    def __init__(self, src: str | Path | bytes | bytearray | memoryview) -> None:
        if isinstance(src, (str, Path)):
            path = Path(src)
            if not path.is_file():
                raise AudioError(f"audio file not found: {path}")
            self.path: Path | None = path
            self.data: bytes | None = None
            self.size = path.stat().st_size
        elif isinstance(src, (bytes, bytearray, memoryview)):
            self.path, self.data = None, bytes(src)
            self.size = len(self.data)
        else:
            raise AudioError(f"audio must be a path or bytes, got {type(src).__name__}")
        if self.size == 0:
            raise AudioError("audio is empty (0 bytes)")

    def read_at(self, pos: int, n: int) -> bytes:
        if self.data is not None:
            return self.data[pos:pos + n]
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            f.seek(pos)
            return f.read(n)

    def fileobj(self):
        return io.BytesIO(self.data) if self.data is not None else str(self.path)


def load_audio(
    src: str | Path | bytes,
    sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
    *,
    cancel: Callable[[], None] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> np.ndarray:
    """Return mono float32 samples in [-1, 1] at ``sr`` Hz from a path or the bytes of a file.

    ``max_seconds``: refuse longer audio (AudioTooLong) — from the header before decoding, or as soon
    as decoding passes it. ``cancel``: called between decode blocks; whatever it raises propagates
    (after any ffmpeg child is killed). ``timeout_s``: wall-clock limit for an ffmpeg decode.
    Raises AudioError (one line, saying what to do) for anything that cannot be used."""
    source = _Source(src)
    head = source.read_at(0, 64)
    fmt = sniff_format(head)
    if fmt is None:
        raise AudioError(f"cannot decode audio: unrecognised format (accepted: {SUPPORTED})")
    x: np.ndarray | None = None
    if fmt in SOUNDFILE_FORMATS:
        x = _decode_soundfile(source, fmt, sr, max_seconds, cancel)
    if x is None:  # an ffmpeg container, or a codec libsndfile lacks inside a whitelisted container
        demuxer = SOUNDFILE_FORMATS.get(fmt, fmt)
        x = _decode_ffmpeg(source, demuxer, sr, max_seconds, cancel, timeout_s)
    if x.size == 0:
        raise AudioError("audio decodes to zero samples")
    if max_seconds is not None and x.size / sr > max_seconds:
        raise AudioTooLong(x.size / sr, max_seconds)
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    peak = float(np.abs(x).max())
    if peak > 1.0:
        x = x / peak
    return np.ascontiguousarray(x, dtype=np.float32)


def probe_audio(src: str | Path | bytes, max_seconds: float | None = None,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> AudioInfo:
    """The checked header facts of an audio file, without decoding it (same rules as load_audio)."""
    source = _Source(src)
    fmt = sniff_format(source.read_at(0, 64))
    if fmt is None:
        raise AudioError(f"cannot decode audio: unrecognised format (accepted: {SUPPORTED})")
    if fmt in SOUNDFILE_FORMATS:
        info = _soundfile_info(source, fmt, max_seconds)
        if info is not None:
            return info
    inp = _ffmpeg_input(source)
    with inp as url:
        return _ffprobe(url, SOUNDFILE_FORMATS.get(fmt, fmt), max_seconds, None, timeout_s, inp.fds)


# -- libsndfile ---------------------------------------------------------------------------------------


def _soundfile_info(source: _Source, fmt: str, max_seconds: float | None) -> AudioInfo | None:
    """Checked header facts, or None when libsndfile cannot open this file (ffmpeg may)."""
    import soundfile as sf

    try:
        info = sf.info(source.fileobj())
    except Exception:
        return None
    frames = int(info.frames)
    seconds = frames / info.samplerate if 0 < frames < (1 << 40) and info.samplerate > 0 else None
    facts = _check_facts(fmt, info.samplerate, info.channels, seconds, max_seconds)
    if fmt == "wav":
        extent = _wav_declared_vs_present(source.read_at, source.size)
        if extent is not None:
            declared, present = extent
            align = _SUBTYPE_BYTES.get(info.subtype, 0) * int(info.channels)
            if declared > present + max(align, 1):
                held = f"{present / align / info.samplerate:.1f} s" if align else f"{present} bytes"
                want = f"{declared / align / info.samplerate:.1f} s" if align else f"{declared} bytes"
                raise AudioError(
                    f"the WAV file is truncated: its header declares {want} of samples but the file holds {held} "
                    "(an interrupted recording or copy); re-export it, or keep what is there with "
                    "`ffmpeg -i in.wav fixed.wav`")
    return facts


_SUBTYPE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
                  "FLOAT": 4, "DOUBLE": 8}


def _decode_soundfile(source: _Source, fmt: str, sr: int, max_seconds: float | None,
                      cancel: Callable[[], None] | None) -> np.ndarray | None:
    import soundfile as sf

    info = _soundfile_info(source, fmt, max_seconds)
    if info is None:
        return None
    sr_in = info.sample_rate
    # never decode past the caller's limit (or far past what the header claimed)
    cap = None if max_seconds is None else int(max_seconds * sr_in) + 1
    expected = int(info.seconds * sr_in) if info.seconds is not None else None
    stream = expected is None or expected > WHOLE_RESAMPLE_MAX
    resampler = StreamResampler(sr_in, sr) if stream and sr_in != sr else None
    parts: list[np.ndarray] = []
    n_in = 0
    try:
        with sf.SoundFile(source.fileobj()) as snd:
            if expected is not None and expected * info.channels <= WHOLE_RESAMPLE_MAX and (cap is None or expected <= cap):
                # small and bounded by its header: one read (libsndfile's mp3 reader gives a few more
                # frames when read in blocks; one read keeps results identical to earlier versions)
                blocks = [snd.read(dtype="float32", always_2d=True)]
            else:
                blocks = snd.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True)
            for block in blocks:
                if cancel is not None:
                    cancel()
                n_in += block.shape[0]
                if cap is not None and n_in > cap:
                    raise AudioTooLong(n_in / sr_in, max_seconds, at_least=True)  # type: ignore[arg-type]
                # a mean over one channel costs ms per minute; a view is free
                mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
                mono = np.ascontiguousarray(mono, dtype=np.float32)
                parts.append(resampler.push(mono) if resampler is not None else mono)
    except (RuntimeError, sf.SoundFileError) as e:  # libsndfile errors mid-file: a damaged stream
        if not parts:
            return None  # could not read a single block: let ffmpeg try the same (whitelisted) container
        raise AudioError(f"cannot decode audio: the {fmt} stream is damaged after {n_in / sr_in:.1f} s "
                         f"({type(e).__name__}); re-export it") from None
    if resampler is not None:
        parts.append(resampler.flush())
    x = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if resampler is None:
        x = resample(x, sr_in, sr)
    return x


# -- ffmpeg -------------------------------------------------------------------------------------------


class _ffmpeg_input:
    """A ``file:`` URL ffmpeg can open and seek (MP4 keeps its index at the end, so no pipe).

    Upload bytes go into an anonymous memory file (Linux), passed to the child as an inherited fd: no
    file on disk, nothing next to it for relative names to reach. Elsewhere: a private temp folder."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.fds: tuple[int, ...] = ()
        self._fd: int | None = None
        self._dir: str | None = None

    def __enter__(self) -> str:
        if self.source.path is not None:
            return "file:" + str(self.source.path.resolve())
        data = self.source.data or b""
        if hasattr(os, "memfd_create") and Path("/dev/fd").is_dir():
            fd = os.memfd_create("talkrig-audio")  # close-on-exec; pass_fds hands it to the child only
            self._fd = fd
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            self.fds = (fd,)
            return f"file:/dev/fd/{fd}"
        self._dir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
        p = Path(self._dir) / "input"
        p.write_bytes(data)
        return "file:" + str(p)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def sweep_stale_temp(max_age_s: float = 3600.0) -> int:
    """Remove temp folders this decoder left behind in killed processes (only where memfd is missing).
    A folder is stale when its process is gone, or it is older than ``max_age_s``. Returns how many."""
    root = Path(tempfile.gettempdir())
    removed = 0
    now = time.time()
    for d in root.glob(f"{TEMP_PREFIX}*"):
        try:
            pid = int(d.name[len(TEMP_PREFIX):].split("-")[0])
        except ValueError:
            continue
        alive = pid != os.getpid() and _pid_alive(pid)
        try:
            old = now - d.stat().st_mtime > max_age_s
        except OSError:
            continue
        if pid != os.getpid() and (not alive or old) and d.is_dir() and d.owner() == _me():
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _me() -> str:
    import getpass

    return getpass.getuser()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the kernel kills ffmpeg if we die (kill -9)


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # loaded before any fork: the child must not import anything


class _Child:
    """An ffmpeg/ffprobe process in its own process group, killed (group and all) on leaving."""

    def __init__(self, cmd: list[str], fds: tuple[int, ...]) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=fds, start_new_session=True,
                                     preexec_fn=_die_with_parent if _PRCTL is not None else None)

    def run(self, deadline: float, cancel: Callable[[], None] | None, max_out: int,
            what: str) -> tuple[int, bytes, bytes]:
        """Read stdout (at most max_out bytes: more is an AudioTooLong-worthy signal, reported as
        ``None`` return code) and stderr until exit, deadline or cancel."""
        import selectors

        out, err = bytearray(), bytearray()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ, out)
        sel.register(self.proc.stderr, selectors.EVENT_READ, err)
        open_ = 2
        while open_:
            if cancel is not None:
                cancel()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AudioError(f"{what} took longer than its time limit; the file is damaged or unusually "
                                 "complex: re-export it as WAV or FLAC")
            for key, _ in sel.select(min(left, 0.1)):
                chunk = os.read(key.fileobj.fileno(), 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_ -= 1
                    continue
                buf = key.data
                if buf is err:
                    if len(err) < 65536:
                        err += chunk
                else:
                    buf += chunk
                    if len(out) > max_out:
                        return -1, bytes(out), bytes(err)
        sel.close()
        left = max(deadline - time.monotonic(), 0.1)
        try:
            code = self.proc.wait(left)
        except subprocess.TimeoutExpired:
            raise AudioError(f"{what} did not finish in time; re-export the file as WAV or FLAC") from None
        return code, bytes(out), bytes(err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def _ffmpeg_error(err: bytes, url: str) -> str:
    lines = [ln for ln in err.decode(errors="replace").strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else "ffmpeg failed"
    msg = msg.replace(url, "the audio").replace(url.removeprefix("file:"), "the audio")
    return " ".join(msg.split())[:200]


def _ffprobe(url: str, demuxer: str, max_seconds: float | None, cancel: Callable[[], None] | None,
             timeout_s: float, fds: tuple[int, ...] = ()) -> AudioInfo:
    exe = shutil.which("ffprobe")
    if exe is None:
        raise AudioError("this audio format needs ffmpeg (with ffprobe), which is not installed "
                         "(apt-get install ffmpeg), or convert the file to WAV or FLAC")
    cmd = [exe, "-v", "error", "-protocol_whitelist", "file", "-f", demuxer, "-i", url,
           "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels,duration:format=duration",
           "-of", "json"]
    child = _Child(cmd, fds)
    try:
        code, out, err = child.run(time.monotonic() + min(timeout_s, 30.0), cancel, 1 << 20, "reading the audio header")
    finally:
        child.kill()
    if code != 0:
        raise AudioError(f"cannot decode audio ({demuxer}): {_ffmpeg_error(err, url)}")
    try:
        meta = json.loads(out.decode() or "{}")
    except ValueError:
        raise AudioError(f"cannot decode audio ({demuxer}): unreadable header") from None
    streams = meta.get("streams") or []
    if not streams:
        raise AudioError(f"the {demuxer} file has no audio stream")
    st = streams[0]
    try:
        rate = float(st.get("sample_rate") or 0)
        channels = int(st.get("channels") or 0)
    except (TypeError, ValueError):
        raise AudioError(f"cannot decode audio ({demuxer}): unreadable header") from None
    seconds = None
    for d in (st.get("duration"), (meta.get("format") or {}).get("duration")):
        try:
            v = float(d)
        except (TypeError, ValueError):
            continue
        if v > 0 and np.isfinite(v):
            seconds = v
            break
    return _check_facts(demuxer, rate, channels, seconds, max_seconds)


def _decode_ffmpeg(source: _Source, demuxer: str, sr: int, max_seconds: float | None,
                   cancel: Callable[[], None] | None, timeout_s: float) -> np.ndarray:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError("this audio format needs ffmpeg, which is not installed (apt-get install ffmpeg), "
                         "or convert the file to WAV or FLAC")
    deadline = time.monotonic() + timeout_s
    inp = _ffmpeg_input(source)
    with inp as url:
        info = _ffprobe(url, demuxer, max_seconds, cancel, timeout_s, inp.fds)
        # the output never exceeds the caller's limit (or, without one, what the header claimed with
        # slack for containers that under-report): a tiny file cannot expand without bound
        if max_seconds is not None:
            limit_s = max_seconds + 1.0
        elif info.seconds is not None:
            limit_s = info.seconds * 1.5 + 10.0
        else:
            limit_s = 4 * 3600.0
        cmd = [exe, "-nostdin", "-v", "error", "-protocol_whitelist", "file,pipe", "-f", demuxer, "-i", url,
               "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sr), "-t", f"{limit_s:.3f}",
               "-f", "f32le", "pipe:1"]
        child = _Child(cmd, inp.fds)
        try:
            code, out, err = child.run(deadline, cancel, int(limit_s * sr) * 4 + 4096, "decoding the audio")
        finally:
            child.kill()
    if code == -1:
        raise AudioTooLong(limit_s, max_seconds if max_seconds is not None else limit_s, at_least=True)
    if code != 0:
        raise AudioError(f"cannot decode audio ({demuxer}): {_ffmpeg_error(err, url)}")
    x = np.frombuffer(out[: len(out) // 4 * 4], dtype="<f4").astype(np.float32)
    if max_seconds is not None and x.size > max_seconds * sr + sr // 100:
        raise AudioTooLong(x.size / sr, max_seconds, at_least=x.size >= int(limit_s * sr))
    return x
