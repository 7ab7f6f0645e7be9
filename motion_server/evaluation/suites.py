"""Evaluation material: the clips each suite scores, with their phones and (optional) ground truth.

- real: English recordings with transcripts in ``../shared/data/speech`` (MANIFEST.json). Phones come
  from the alignment file shipped with the clip when there is one, else from forced alignment of the
  transcript (pocketsphinx, ``motion_server.align``).
- synthetic: the held-out ``test`` split of a corpus built by ``talkrig synth``: exact phones and
  ground-truth motion.
- user: a folder of audio files, each with a same-stem ``.txt`` transcript and optionally a Live Link
  Face ``.csv`` (or ``.npz``) ground truth (taken to start with the audio) and phone timings
  (``.TextGrid`` or pocketsphinx ``.phone.json``; otherwise the transcript is aligned).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from motion_server.audio.io import load_audio
from motion_server.dsp import resample
from motion_server.options import AUDIO_SUFFIXES, SAMPLE_RATE
from rig_mapping import FaceMotion

from .phone_files import load_phone_file

SR = SAMPLE_RATE


class SuiteError(ValueError):
    pass


@dataclass
class EvalClip:
    name: str
    audio: np.ndarray
    sr: int
    text: str | None = None
    phones: list | None = None
    phones_source: str = "none"  # "given" | "aligned" | "corpus" | "none"
    gt: FaceMotion | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sr


def clean_transcript(text: str) -> str:
    """Drop bracketed event tags ("[laughter]") that are not words to align."""
    return re.sub(r"\s+", " ", re.sub(r"\[[^\]]*\]", " ", text)).strip()


def _align(clip: EvalClip) -> None:
    """Fill clip.phones by forced alignment of clip.text; records why when it cannot."""
    try:
        from motion_server.align import align_transcript
    except ImportError as exc:
        clip.notes.append(f"forced alignment unavailable ({exc}); phone metrics skipped")
        return
    try:
        clip.phones = list(align_transcript(clip.audio, clip.sr, clean_transcript(clip.text or "")))
        clip.phones_source = "aligned"
    except Exception as exc:  # one clip the aligner cannot handle must not end the evaluation
        clip.notes.append(f"forced alignment failed: {exc}")


def shared_speech_dir(shared_dir: Path) -> Path:
    d = Path(shared_dir) / "data" / "speech"
    if not (d / "MANIFEST.json").is_file():
        raise SuiteError(f"no speech MANIFEST.json under {d}; pass --shared-dir pointing at the shared folder "
                         "(the one holding data/speech/)")
    return d


def real_entries(shared_dir: Path) -> list[dict[str, Any]]:
    d = shared_speech_dir(shared_dir)
    clips = json.loads((d / "MANIFEST.json").read_text(encoding="utf-8"))["clips"]
    return [c for c in clips if c.get("language") == "en" and c.get("transcript")]


def real_clips(shared_dir: Path, limit: int | None = None) -> Iterator[EvalClip]:
    d = shared_speech_dir(shared_dir)
    for entry in real_entries(shared_dir)[:limit]:
        clip = EvalClip(name=entry["file"], audio=_load_audio(d / entry["file"]), sr=SR,
                        text=entry["transcript"])
        if entry.get("alignment"):
            try:
                clip.phones = load_phone_file(d / entry["alignment"])
                clip.phones_source = "given"
            except ValueError as exc:
                clip.notes.append(f"given alignment unreadable ({exc}); aligning the transcript instead")
        if clip.phones is None:
            _align(clip)
        yield clip


def synthetic_clips(data_dir: Path, limit: int | None = None, split: str = "test") -> Iterator[EvalClip]:
    """A corpus's held-out clips (``split`` "test", or "val" to tune settings without the test split)."""
    from motion_server.synth.corpus import CorpusReader

    reader = CorpusReader(Path(data_dir), split)
    for k, utt in enumerate(reader):
        if limit is not None and k >= limit:
            break
        audio = np.asarray(utt.audio, np.float32)
        sr = int(utt.sr)
        if sr != SR:
            audio, sr = resample(audio, sr, SR), SR
        name = f"{getattr(utt, 'voice', 'utt')}#{getattr(utt, 'index', k)}"
        yield EvalClip(name=name, audio=audio, sr=sr,
                       text=getattr(utt, "text", None), phones=list(utt.phones), phones_source="corpus",
                       gt=utt.motion)


# Ground truth and audio lengths may differ by a little (capture started late, trailing frames); beyond
# this the two files are probably not the same take, which the clip's notes then say.
GT_LENGTH_TOLERANCE_S = 0.5


def _load_audio(path: Path) -> np.ndarray:
    from motion_server.audio.io import AudioError

    try:
        return load_audio(path, sr=SR)
    except AudioError as exc:
        raise SuiteError(f"{path}: {exc}; convert it to WAV/FLAC or remove it from the folder") from None


def _load_ground_truth(path: Path) -> FaceMotion:
    """A user's ground-truth take; an unreadable file stops the suite with the file and line at fault."""
    from rig_mapping.formats import FormatError, load_motion

    try:
        return load_motion(path)
    except (FormatError, UnicodeDecodeError) as exc:
        raise SuiteError(f"ground truth {exc}; fix the file or move it out of the folder to evaluate "
                         f"{path.stem} without ground truth") from None


def _read_transcript(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig").strip()
    except UnicodeDecodeError:
        raise SuiteError(f"transcript {path} is not UTF-8 text; save it as UTF-8") from None


def user_clips(user_dir: Path, limit: int | None = None) -> Iterator[EvalClip]:
    user_dir = Path(user_dir)
    if not user_dir.is_dir():
        raise SuiteError(f"--user-dir {user_dir} is not a folder")
    audios = sorted(p for p in user_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not audios:
        raise SuiteError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {user_dir}")
    for path in audios[:limit]:
        txt = path.with_suffix(".txt")
        clip = EvalClip(name=path.name, audio=_load_audio(path), sr=SR,
                        text=_read_transcript(txt) if txt.is_file() else None)
        for gt_path in (path.with_suffix(".csv"), path.with_suffix(".npz")):
            if gt_path.is_file():
                clip.gt = _load_ground_truth(gt_path)
                if abs(clip.gt.duration - clip.duration) > GT_LENGTH_TOLERANCE_S:
                    clip.notes.append(f"ground truth {gt_path.name} lasts {clip.gt.duration:.2f} s but the audio "
                                      f"{clip.duration:.2f} s; compared over the shorter, from both starts")
                break
        for ph in (path.with_suffix(".TextGrid"), path.with_name(path.stem + ".phone.json")):
            if ph.is_file():
                try:
                    clip.phones, clip.phones_source = load_phone_file(ph), "given"
                except ValueError as exc:
                    clip.notes.append(f"phone file unreadable ({exc}); aligning the transcript instead")
                break
        if clip.phones is None:
            if clip.text:
                _align(clip)
            else:
                clip.notes.append(f"no transcript {txt.name}: phone metrics skipped")
        yield clip
