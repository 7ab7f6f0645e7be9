"""The one audio decoder against hostile and broken files: header facts are checked before decoding,
decoding stops at the caller's limit, ffmpeg runs only on whitelisted containers, under a time limit
and cancel, and never outlives the call (or its process). Memory is measured in child processes."""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from motion_server_helpers import server_env, speech_like_wav
from waiting import wait_until

from motion_server.audio import AudioError, load_audio
from motion_server.audio.io import AudioTooLong, probe_audio, sniff_format, sweep_stale_temp

pytestmark = pytest.mark.timeout(300)
linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists() or not hasattr(os, "memfd_create"),
                                reason="measures through /proc; uploads go to a memfd on Linux only")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg/ffprobe not installed")


def wav_header(rate: int, channels: int = 1, bits: int = 16, data_len: int | None = None,
               payload: bytes = b"") -> bytes:
    """A PCM WAV whose header says exactly what the caller asks, true or not."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    n = len(payload) if data_len is None else data_len
    return (b"RIFF" + struct.pack("<I", (36 + n) & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", n & 0xFFFFFFFF) + payload)


def ffmpeg_make(tmp: Path, name: str, *args: str) -> bytes:
    out = tmp / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(out)], check=True, timeout=120)
    return out.read_bytes()


def peak_rss_mb_of(code: str, timeout: float = 120.0) -> tuple[float, str]:
    """Run ``code`` in a fresh Python (address space capped at 4 GiB so a regression cannot take the
    machine down) and return its peak resident memory in MB and its stdout."""
    src = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    """) + textwrap.dedent(code) + textwrap.dedent("""
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked copy of the parent
        hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
        print("PEAK", int(hwm.split()[1]) / 1024)
    """)
    p = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout, env=server_env())
    assert p.returncode == 0, p.stderr[-2000:]
    peak = float(p.stdout.strip().splitlines()[-1].split()[1])
    return peak, p.stdout


# -- header facts before decoding ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 100, 3999, 384_001, 100_000_000])
def test_absurd_sample_rates_are_refused_before_decoding(rate) -> None:
    data = wav_header(rate, payload=b"\0" * 4000)
    with pytest.raises(AudioError, match=r"header says .* Hz; only 4-384 kHz"):
        load_audio(data)


@linux_only
def test_100mhz_header_and_1hz_header_cost_no_memory() -> None:
    """Finding 2: a 4 KB WAV claiming 100 MHz asked the resampler for 15 GiB; 20 KB at 1 Hz for 1.2 GB."""
    peak, out = peak_rss_mb_of("""
        import struct
        sys.path[:0] = ["tests"]
        from test_audio_decode import wav_header
        from motion_server.audio import AudioError, load_audio
        for rate, n in ((100_000_000, 4000), (1, 20000)):
            try:
                load_audio(wav_header(rate, payload=b"\\0" * n), max_seconds=600)
            except AudioError as e:
                print("refused", rate, e)
    """)
    assert out.count("refused") == 2
    assert peak < 300, f"peak {peak:.0f} MB"


def test_too_many_channels_refused() -> None:
    with pytest.raises(AudioError, match="channels"):
        load_audio(wav_header(16000, channels=40, payload=b"\0" * 8000))


def test_claimed_duration_over_the_limit_is_refused_before_decoding(tmp_path) -> None:
    x = np.zeros(16000 * 30, np.float32)
    b = io.BytesIO()
    sf.write(b, x, 16000, format="FLAC")
    blocks: list[int] = []  # the cancel check runs before each decoded block: none may run
    with pytest.raises(AudioTooLong) as e:
        load_audio(b.getvalue(), max_seconds=10, cancel=lambda: blocks.append(1))
    assert blocks == [], "the audio was decoded before its header's 30 s were refused"
    assert e.value.seconds == pytest.approx(30) and e.value.limit == 10 and not e.value.at_least
    assert probe_audio(b.getvalue()).seconds == pytest.approx(30)


def test_wav_lying_about_its_length_stops_at_the_limit() -> None:
    """A streamed WAV (data size 0xFFFFFFFF: unknown) is measured by what it holds and refused."""
    payload = np.zeros(16000 * 12, "<i2").tobytes()
    data = wav_header(16000, data_len=0xFFFFFFFF, payload=payload)
    with pytest.raises(AudioTooLong):
        load_audio(data, max_seconds=5)
    assert load_audio(data).size == 16000 * 12  # without a limit it is read whole, as before


def test_truncated_wav_is_a_clear_one_line_error() -> None:
    """Finding 9: a truncated WAV was accepted silently."""
    good = speech_like_wav(4.0)
    with pytest.raises(AudioError) as e:
        load_audio(good[: len(good) // 3])
    msg = str(e.value)
    assert "truncated" in msg and "4.0 s" in msg and "1.3 s" in msg and "\n" not in msg
    assert load_audio(good).size == 64000  # the whole file is fine


def test_unrecognised_bytes_are_refused_without_ffmpeg(tmp_path, monkeypatch) -> None:
    """Finding 4: an 'audio' upload that is an ffmpeg concat script used to make ffmpeg read files next
    to the temp folder; now nothing outside the whitelist reaches ffmpeg at all."""
    calls = []
    real_popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append(a) or real_popen(*a, **k))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for script in (b"ffconcat version 1.0\nfile fifo\n", f"ffconcat version 1.0\nfile {fifo}\n".encode(),
                   b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n", b"\x00" * 100):
        with pytest.raises(AudioError, match="unrecognised format"):
            load_audio(script)
    assert calls == []


@pytest.mark.parametrize("head, fmt", [
    (b"RIFF\0\0\0\0WAVEfmt ", "wav"), (b"fLaC\0\0\0\x22", "flac"), (b"OggS\0\x02", "ogg"),
    (b"\0\0\0\x20ftypM4A ", "mov"), (b"\x1a\x45\xdf\xa3\x9f", "matroska"), (b"ID3\x04\0", "mp3"),
    (b"\xff\xfb\x90\x64", "mp3"), (b"\xff\xf1\x50\x80", "aac"), (b"ffconcat version 1.0", None),
    (b"#EXTM3U", None), (b"<?xml", None), (b"", None),
])  # fmt: skip
def test_sniffing(head, fmt) -> None:
    assert sniff_format(head.ljust(16, b"\0") if head else head) == fmt


# -- ffmpeg under limits ------------------------------------------------------------------------------


@linux_only
@needs_ffmpeg
def test_long_container_refused_from_its_header(tmp_path) -> None:
    """Finding 2: a 2 MB Matroska file of silence cost 1.2-1.4 GB; its header says how long it is."""
    mkv = ffmpeg_make(tmp_path, "long.mkv", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "3000",
                      "-c:a", "flac")
    assert len(mkv) < 4 << 20
    path = tmp_path / "long.mkv"
    peak, out = peak_rss_mb_of(f"""
        from motion_server.audio.io import AudioTooLong, load_audio
        try:
            load_audio(open({str(path)!r}, "rb").read(), max_seconds=600)
        except AudioTooLong as e:
            print("refused", e)
    """)
    assert "refused audio is 3000.0 s long" in out
    assert peak < 300, f"peak {peak:.0f} MB"


@needs_ffmpeg
def test_container_without_duration_stops_at_the_limit(tmp_path) -> None:
    """ADTS AAC has no duration in its header: ffmpeg's output is capped at the limit instead."""
    aac = ffmpeg_make(tmp_path, "x.aac", "-f", "lavfi", "-i", "sine=f=220:r=16000", "-t", "20", "-c:a", "aac")
    with pytest.raises(AudioTooLong):
        load_audio(aac, max_seconds=5)
    assert abs(load_audio(aac).size - 20 * 16000) < 16000 * 0.2


@needs_ffmpeg
def test_common_containers_decode(tmp_path) -> None:
    for name, codec in (("a.m4a", "aac"), ("a.mp3", "libmp3lame"), ("a.ogg", "libopus"), ("a.webm", "libopus")):
        data = ffmpeg_make(tmp_path, name, "-f", "lavfi", "-i", "sine=f=220:r=44100", "-t", "2", "-c:a", codec)
        x = load_audio(data)
        assert abs(x.size - 32000) < 2000 and np.abs(x).max() > 0.1, name
        info = probe_audio(data)
        assert info.sample_rate in (44100, 48000) and info.channels == 1 and abs(info.seconds - 2) < 0.1, name
        assert np.allclose(load_audio(tmp_path / name), x)


def _children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "stat").read_text().rsplit(")", 1)[1].split()[1] == me:
                    out.add(int(d.name))
            except (OSError, IndexError):
                pass
    return out


@linux_only
@needs_ffmpeg
def test_cancel_and_time_limit_kill_ffmpeg(tmp_path) -> None:
    slow = ffmpeg_make(tmp_path, "slow.mkv", "-f", "lavfi", "-i", "anoisesrc=r=48000:a=0.1", "-t", "1500",
                       "-c:a", "flac")  # noise in FLAC: a slow-ish decode
    before = _children()

    class Stop(Exception):
        pass

    seen: list[set[int]] = []

    def cancel() -> None:
        # cancel once the decoder (not the header probe) is running: a 1500 s file is far from decoded
        decoders = {k for k in _children() - before if "f32le" in _cmd(Path(f"/proc/{k}"))}
        if decoders:
            seen.append(decoders)
            raise Stop

    with pytest.raises(Stop):
        load_audio(slow, cancel=cancel)
    assert seen and all(_proc_state(k) in ("", "Z") for k in seen[0]), "the cancelled decoder still runs"
    with pytest.raises(AudioError, match="time limit"):
        load_audio(slow, timeout_s=0.5)
    assert _children() <= before, "ffmpeg outlived the call"


@linux_only
@needs_ffmpeg
def test_ffmpeg_dies_with_a_killed_process(tmp_path) -> None:
    """Finding 4: ffmpeg was left running after the server exited. The kernel now kills it."""
    path = tmp_path / "slow.mkv"
    ffmpeg_make(tmp_path, "slow.mkv", "-f", "lavfi", "-i", "anoisesrc=r=48000:a=0.1", "-t", "3000", "-c:a", "flac")
    src = textwrap.dedent(f"""
        import threading, time
        from motion_server.audio import load_audio
        threading.Thread(target=load_audio, args=(open({str(path)!r}, "rb").read(),), daemon=True).start()
        time.sleep(600)  # decoding in the background until the test kills this process
    """)
    p = subprocess.Popen([sys.executable, "-c", src], env=server_env())
    try:
        kids = wait_until(lambda: [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                                   and _ppid(d) == p.pid and "ffmpeg" in _cmd(d)], 30, "ffmpeg to start")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    wait_until(lambda: all(_proc_state(k) in ("", "Z") for k in kids), 10, "ffmpeg to die with its parent")


def _ppid(d: Path) -> int:
    try:
        return int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _cmd(d: Path) -> str:
    try:
        return (d / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _proc_state(pid: int) -> str:
    """The state letter in /proc (R, S, T, Z...), or "" once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


@linux_only
@needs_ffmpeg
def test_uploads_leave_no_temp_files(tmp_path, monkeypatch) -> None:
    """Finding 9: kill -9 left temp files. Uploads go to an anonymous memory file: nothing on disk."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = ffmpeg_make(tmp_path, "a.m4a", "-f", "lavfi", "-i", "sine=f=220:r=16000", "-t", "1", "-c:a", "aac")
    (tmp_path / "a.m4a").unlink()
    seen: list[list[str]] = []
    real = subprocess.Popen.__init__

    def spy(self, cmd, *a, **k):
        seen.append(list(cmd))
        real(self, cmd, *a, **k)

    monkeypatch.setattr(subprocess.Popen, "__init__", spy)
    assert load_audio(data).size > 15000
    assert list(tmp_path.iterdir()) == []
    urls = [c[c.index("-i") + 1] for c in seen]
    assert urls and all(u.startswith("file:/dev/fd/") for u in urls), urls
    # and where memfd is missing, folders of killed processes are swept
    stale = tmp_path / "talkrig-audio-999999999-x"
    stale.mkdir()
    (stale / "input").write_bytes(b"x")
    assert sweep_stale_temp() == 1 and not stale.exists()


# -- long inputs without a limit -----------------------------------------------------------------------


def test_long_high_rate_input_is_resampled_in_blocks() -> None:
    """Beyond ~3 min at 48 kHz the resampler streams: memory follows the output, not the input."""
    sr_in, seconds = 48000, 200
    t = np.arange(sr_in * seconds) / sr_in
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    b = io.BytesIO()
    sf.write(b, x, sr_in, format="WAV", subtype="PCM_16")
    y = load_audio(b.getvalue())
    assert abs(y.size - 16000 * seconds) <= 16
    mid = y[16000 * 100: 16000 * 100 + 1600]
    ref = 0.3 * np.sin(2 * np.pi * 440 * (np.arange(16000 * 100, 16000 * 100 + 1600) / 16000))
    assert np.abs(mid - ref).max() < 0.01
