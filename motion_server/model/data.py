"""Training data: utterances -> cached per-frame feature rows + motion, and batch samplers.

Sources: the synthetic corpus (``motion_server.synth.corpus.CorpusReader``) or a folder of user captures
(``<stem>.wav|.flac|.mp3`` + ``<stem>.csv|.npz|.json`` motion of the same stem, e.g. Live Link Face;
optional ``labels.json`` giving each stem an emotion and a style group).
Features are computed once and cached (``.npz``, no pickle) in the training output folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from motion_server.dsp import resample
from motion_server.options import AUDIO_SUFFIXES, SAMPLE_RATE
from rig_mapping import FaceMotion
from rig_mapping.formats import FORMATS

from .device import CoreShare
from .features import make_features
from .phone_track import phone_track


class DataError(ValueError):
    """Training data missing or unusable."""


@dataclass
class Clip:
    name: str
    feats: np.ndarray  # [T, F]
    motion: np.ndarray  # [T, 58] raw (weights + head)
    stats: np.ndarray  # [2 * n_mels] clip-level audio statistics
    emotion: str  # "" when unknown
    group: str  # clips of one speaker+emotion share a group (style references come from the group)
    phones: np.ndarray | None = None  # [T] phone-track indices (0 = unknown), when the source has phones


@dataclass
class Utterance:
    """The fields training needs, whatever the source."""

    name: str
    audio: np.ndarray
    sr: int
    motion: FaceMotion
    emotion: str = ""
    group: str = ""
    phones: list | None = None  # ARPAbet phones with times (the synthetic corpus has exact ones)


def _field(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def corpus_utterances(root: Path, split: str) -> Iterator[Utterance]:
    from motion_server.synth.corpus import CorpusReader  # the synthetic corpus (built by `talkrig synth`)

    for i, u in enumerate(CorpusReader(root, split)):
        motion = _field(u, "motion", "face_motion")
        audio = np.asarray(_field(u, "audio"), np.float32)
        sr = int(_field(u, "sr", "sample_rate", default=SAMPLE_RATE))
        emo = _field(u, "emotion", "emotion_label", default="") or ""
        voice = _field(u, "voice", default="") or ""
        speaker = _field(u, "speaker", "speaker_id", default=None)
        style = _field(u, "style", "style_vector", "speaker_style", default=None)
        if speaker is None and style is not None:
            speaker = hashlib.sha1(np.asarray(style, np.float32).tobytes()).hexdigest()[:8]
        name = f"{split}_{_field(u, 'index', 'id', 'name', default=i)}"
        # the motion depends on the speaker's style and the emotion, not on the synthetic voice
        yield Utterance(name, audio, sr, motion, str(emo), f"{speaker or voice}|{emo}",
                        list(_field(u, "phones", default=None) or []) or None)


def capture_utterances(root: Path) -> Iterator[Utterance]:
    from motion_server.audio.io import load_audio
    from rig_mapping.formats import load_motion

    audios = sorted(p for p in root.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not audios:
        raise DataError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}); a capture folder holds "
                        "<name>.wav + <name>.csv (Live Link Face) pairs")
    # optional labels.json: {"<stem>": {"emotion": "happy", "group": "speaker1|happy"}}
    labels = json.loads((root / "labels.json").read_text()) if (root / "labels.json").is_file() else {}
    for a in audios:
        m = next((a.with_suffix(s) for s in tuple(FORMATS) if a.with_suffix(s).is_file()), None)
        if m is None:
            raise DataError(f"{a.name} has no motion file of the same name ({', '.join(tuple(FORMATS))})")
        motion = load_motion(m)
        lab = labels.get(a.stem, {})
        yield Utterance(a.stem, load_audio(a, sr=SAMPLE_RATE), SAMPLE_RATE, motion, str(lab.get("emotion", "")),
                        str(lab.get("group", f"capture|{root.name}")))


def _clip_from(u: Utterance, feats_fn: Any, fps: float) -> Clip | None:
    if u.sr != feats_fn.sr:
        u.audio = resample(u.audio, u.sr, feats_fn.sr)
    motion = u.motion if abs(u.motion.fps - fps) < 1e-6 else u.motion.resample(fps)
    T = motion.n_frames
    if T < 8:
        return None
    feats, stats = feats_fn.rows_and_stats(u.audio, n_frames=T)
    mo = np.concatenate([motion.weights, motion.head], axis=1).astype(np.float32)
    track = phone_track(u.phones, T, fps) if u.phones else None
    return Clip(u.name, feats, mo, stats, u.emotion, u.group or u.name, track)


def build_clips(utts: Iterable[Utterance], cfg: dict[str, Any], desc: str = "features") -> list[Clip]:
    cores = CoreShare(torch.get_num_threads())
    feats_fn = make_features(cfg["features"], cfg["fps"], cfg.get("speech_encoder"), run=cores.run)
    try:
        clips = [c for u in tqdm(utts, desc=desc, unit="utt", leave=False)
                 if (c := _clip_from(u, feats_fn, cfg["fps"])) is not None]
    finally:
        cores.close()
    if not clips:
        raise DataError("no usable utterances (each needs at least 8 motion frames)")
    return clips


def save_clips(clips: list[Clip], path: Path) -> None:
    lens = np.array([len(c.feats) for c in clips])
    np.savez(path, feats=np.concatenate([c.feats for c in clips]), motion=np.concatenate([c.motion for c in clips]),
             stats=np.stack([c.stats for c in clips]), lens=lens,
             names=np.array([c.name for c in clips]), emotions=np.array([c.emotion for c in clips]),
             groups=np.array([c.group for c in clips]),
             phones=np.concatenate([c.phones if c.phones is not None else np.zeros(len(c.feats), np.int64)
                                    for c in clips]).astype(np.int16))


def load_clips(path: Path) -> list[Clip]:
    with np.load(path, allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}  # read each array once (every npz[k] access re-reads the file)
    offs = np.concatenate([[0], np.cumsum(z["lens"])])
    ph = z["phones"].astype(np.int64) if "phones" in z else None
    return [Clip(str(z["names"][i]), z["feats"][offs[i]:offs[i + 1]], z["motion"][offs[i]:offs[i + 1]],
                 z["stats"][i], str(z["emotions"][i]), str(z["groups"][i]),
                 ph[offs[i]:offs[i + 1]] if ph is not None else None) for i in range(len(z["lens"]))]


def cached_clips(key: dict[str, Any], out_dir: Path, name: str, make: Any) -> list[Clip]:
    """Load ``out_dir/cache_<name>.npz`` if it was made with the same ``key`` (feature settings +
    source), else build it with ``make()`` and save it."""
    path = out_dir / f"cache_{name}.npz"
    key_path = path.with_suffix(".json")
    k = json.dumps(key, sort_keys=True)
    if path.is_file() and key_path.is_file() and key_path.read_text() == k:
        return load_clips(path)
    clips = make()
    save_clips(clips, path)
    key_path.write_text(k)
    return clips


def summarize(clips: list[Clip], fps: float) -> dict[str, Any]:
    emos: dict[str, int] = {}
    for c in clips:
        emos[c.emotion or "?"] = emos.get(c.emotion or "?", 0) + 1
    return {"clips": len(clips), "minutes": round(sum(len(c.feats) for c in clips) / fps / 60, 2),
            "groups": len({c.group for c in clips}), "emotions": emos}


class Batches:
    """Random training windows with a style reference clip from the same group (another utterance when
    the group has one, so the style code cannot copy the target's lip timing)."""

    def __init__(self, clips: list[Clip], emotions: list[str], seed: int) -> None:
        self.clips = clips
        self.gen = np.random.default_rng(seed)
        self.by_group: dict[str, list[int]] = {}
        for i, c in enumerate(clips):
            self.by_group.setdefault(c.group, []).append(i)
        self.emo_idx = {e: i for i, e in enumerate(emotions)}
        self.lens = np.array([len(c.feats) for c in clips])

    def _pick(self, batch: int, min_len: int) -> np.ndarray:
        ok = np.flatnonzero(self.lens >= min_len)
        if not len(ok):
            raise DataError(f"no clip has {min_len} frames; use a smaller window or longer clips")
        p = self.lens[ok] / self.lens[ok].sum()  # long clips hold more windows
        return self.gen.choice(ok, size=batch, p=p)

    def windows(self, batch: int, frames: int, min_frames: int | None = None) -> dict[str, torch.Tensor]:
        idx = self._pick(batch, min_frames or min(frames, int(self.lens.max())))
        L = int(min(frames, self.lens[idx].min()))
        feats, motion, phones, starts = [], [], [], []
        for i in idx:
            s = int(self.gen.integers(0, self.lens[i] - L + 1))
            c = self.clips[i]
            feats.append(c.feats[s: s + L])
            motion.append(c.motion[s: s + L])
            phones.append(c.phones[s: s + L] if c.phones is not None else np.zeros(L, np.int64))
            starts.append(s)
        return {"feats": torch.from_numpy(np.stack(feats)), "motion": torch.from_numpy(np.stack(motion)),
                "phones": torch.from_numpy(np.stack(phones)),
                "idx": torch.from_numpy(idx), "start": torch.tensor(starts)}

    def references(self, idx: torch.Tensor, max_frames: int, chunk: int = 15) -> list[torch.Tensor]:
        refs = []
        for i in idx.tolist():
            group = self.by_group[self.clips[i].group]
            others = [j for j in group if j != i]
            j = int(self.gen.choice(others)) if others else i
            m = self.clips[j].motion
            L = min(len(m), max_frames)
            s = int(self.gen.integers(0, len(m) - L + 1))
            r = m[s: s + L]
            if j == i:
                # the clip is its own reference: shuffle half-second chunks so the style code keeps the
                # clip's statistics but cannot carry the lip timing of the training target
                parts = [r[k: k + chunk] for k in range(0, L, chunk)]
                r = np.concatenate([parts[k] for k in self.gen.permutation(len(parts))])
            refs.append(torch.from_numpy(np.ascontiguousarray(r)))
        return refs

    def emotion_ids(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.emo_idx.get(self.clips[i].emotion, -1) for i in idx.tolist()])
