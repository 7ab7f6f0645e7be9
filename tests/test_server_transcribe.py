"""The motion server recognises speech: a `transcribe` request (text, progress, cancel) and generate jobs
without a transcript, with the recogniser loaded once per server process."""

from __future__ import annotations

from pathlib import Path

import pytest
from motion_server_helpers import ServerProcess
from waiting import pump_until

from motion_server.client import JobCancelled, MotionClient, ServerError

JFK = Path(__file__).resolve().parents[1] / "examples" / "jfk.flac"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("asr"), engine="procedural")
    yield s
    s.close()


def test_transcribe_request_returns_the_text_and_the_recogniser_loads_once(server):
    with MotionClient(server.address, timeout_s=60) as c:
        seen: list[tuple[float, str]] = []
        tr = c.transcribe(JFK, progress=lambda f, s: seen.append((f, s)))
        assert "fellow Americans" in tr["text"] and tr["language"] == "en"
        assert tr["words"] and all(len(w) == 4 for w in tr["words"])
        assert any(stage == "transcribing" for _, stage in seen)
        motion = c.generate(JFK, {"seed": 1})  # no transcript: the server recognises one
        info = motion.meta["transcript"]
        assert info["source"] == "recognised" and info["used"] and "fellow Americans" in info["text"]
        off = c.generate(JFK, {"seed": 1, "transcribe": False})
        assert off.meta["transcript"]["source"] == "none"
        assert c.status()["recogniser"]["loads"] == 1


def test_a_transcribe_job_can_be_cancelled(server):
    with MotionClient(server.address, timeout_s=60) as c:
        job = c.submit_transcribe(JFK)
        job.cancel()
        pump_until(c, lambda: job.done, 60, "the cancelled transcribe job to end")
        with pytest.raises(JobCancelled):
            job.get()


def test_a_server_without_recognition_refuses_transcribe_with_the_reason(tmp_path):
    s = ServerProcess(tmp_path, engine="energy", extra=["--no-transcribe"])
    try:
        with MotionClient(s.address, timeout_s=30) as c, pytest.raises(ServerError) as err:
            c.transcribe(JFK)
        assert err.value.code == "engine_rejected" and "recogniser" in str(err.value)
    finally:
        s.close()
