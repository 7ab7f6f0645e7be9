"""Synthetic audio -> face-motion corpus: a reproducible, resumable, parallel builder and a reader.

Layout of a corpus folder::

    MANIFEST.json            seed, options, splits (held-out voices and sentences), per-shard hash/counts
    shard-00000.npz ...      utterances [k * shard_size, (k + 1) * shard_size) of the global sequence

Utterance ``i`` depends only on ``(seed, i)`` (its own ``numpy`` generator), so shard ``k`` is the same
bytes whatever the worker count, order or interruptions; more ``--hours`` later only appends shards.
Each utterance: a voice and a sentence in its language, a synthetic speaker style, an emotion preset with
its prosody, synthesis, augmentation (tempo changes move the phone times with the audio), and the
procedural performer's FaceMotion at 30 fps on the time-aligned clean speech.

Splits hold out whole voices and whole sentences: an utterance goes to ``test`` if its voice or sentence
is held out for test, else to ``val`` if either is held out for val, else to ``train``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from motion_server.dsp import resample
from motion_server.options import SAMPLE_RATE
from motion_server.phones import Phone, arpabet_symbols, pad_to, phones_from_arrays, phones_to_arrays

from .speech.base import Prosody

FORMAT = "talkrig-synth-corpus"
FORMAT_VERSION = 1
SR = SAMPLE_RATE
FPS = 30.0
PROSODY_DEFAULTS = Prosody().to_dict()  # the column order of a shard's "prosody" array
PROSODY_RANGES = Prosody.ranges()
_JITTER_LIMITS = dict.fromkeys(("rate", "pitch", "pitch_range", "energy"), (0.5, 2.0))  # a speaker's plausible span
SPLITS = ("train", "val", "test")
MANIFEST = "MANIFEST.json"
_EST_SECONDS_PER_UTT = 2.6  # first guess for planning; the builder tops up until the hours are reached


class CorpusError(RuntimeError):
    """Bad corpus folder or options."""


# --------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class CorpusOptions:
    seed: int = 0
    hours: float = 1.0
    voices: tuple[str, ...] = ()  # voice ids or backend names; empty = every installed voice
    languages: tuple[str, ...] = ()  # base language codes; empty = all
    emotions: tuple[str, ...] = ()  # empty = all of the performer's EMOTIONS
    shard_size: int = 32
    augment: bool = True
    english_share: float = 0.8  # probability an utterance uses an English voice (when others exist)
    neutral_share: float = 0.3  # probability of the neutral emotion
    test_voices: int | None = None  # held-out voices; None = 2 when >= 6 English voices, 1 when >= 3, else 0
    val_voices: int | None = None  # None = 1 when >= 4 English voices, else 0
    test_sentences: float = 0.10
    val_sentences: float = 0.05

    def identity(self) -> dict:
        """Everything that changes utterance content (``hours`` only decides how many shards)."""
        from motion_server.performer import PERFORMER_VERSION

        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "hours"}
        d["performer_version"] = PERFORMER_VERSION
        d["format_version"] = FORMAT_VERSION
        return json.loads(json.dumps(d))


@dataclass(frozen=True)
class Plan:
    voices: tuple[str, ...]
    voice_language: dict[str, str]
    voice_weights: np.ndarray
    test_voices: tuple[str, ...]
    val_voices: tuple[str, ...]
    emotions: tuple[str, ...]
    sentences: dict[str, tuple]  # base language -> Sentence tuple
    test_sentences: frozenset[str]
    val_sentences: frozenset[str]

    def split_of(self, voice: str, sentence_id: str) -> str:
        if voice in self.test_voices or sentence_id in self.test_sentences:
            return "test"
        if voice in self.val_voices or sentence_id in self.val_sentences:
            return "val"
        return "train"


def _unit_hash(*parts: object) -> float:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def make_plan(opts: CorpusOptions) -> Plan:
    """Resolve voices, languages, emotions and held-out sets from the options (deterministic)."""
    from motion_server.performer.style import EMOTIONS

    from .speech import list_voices
    from .text import base_language, languages, load_sentences

    avail = list_voices(installed_only=True)
    if not avail:
        raise CorpusError("no speech synthesizer is installed; install with: "
                          "sudo apt-get install espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts")
    chosen = []
    for v in avail:
        if opts.voices and not any(sel == v.id or sel == v.backend for sel in opts.voices):
            continue
        lang = base_language(v.language)
        if opts.languages and lang not in opts.languages:
            continue
        if lang not in languages():
            continue
        chosen.append(v)
    if opts.voices:
        known = {v.id for v in avail} | {v.backend for v in avail}
        missing = [s for s in opts.voices if s not in known]
        if missing:
            raise CorpusError(f"unknown or uninstalled voice(s) {missing}; see talkrig synth --list-voices")
    if not chosen:
        raise CorpusError("no voice matches --voices/--languages; see talkrig synth --list-voices")
    emotions = tuple(opts.emotions) or tuple(EMOTIONS)
    bad = [e for e in emotions if e not in EMOTIONS]
    if bad:
        raise CorpusError(f"unknown emotion(s) {bad}; choose from {', '.join(EMOTIONS)}")

    ids = tuple(sorted(v.id for v in chosen))
    lang_of = {v.id: base_language(v.language) for v in chosen}
    backend_of = {v.id: v.backend for v in chosen}
    english = [i for i in ids if lang_of[i] == "en"]

    # held-out voices: English, spread over backends (one espeak, one other when possible)
    n_test = opts.test_voices if opts.test_voices is not None else (2 if len(english) >= 6 else 1 if len(english) >= 3 else 0)
    n_val = opts.val_voices if opts.val_voices is not None else (1 if len(english) >= 4 else 0)
    if n_test + n_val >= max(len(english), 1) and (n_test + n_val) > 0:
        raise CorpusError(f"cannot hold out {n_test} test + {n_val} val voices from {len(english)} English voices")
    order = sorted(english, key=lambda i: _unit_hash(opts.seed, "voice", i))
    groups = [[i for i in order if backend_of[i] == "espeak"], [i for i in order if backend_of[i] != "espeak"]]
    picked: list[str] = []
    while len(picked) < n_test + n_val:
        for g in sorted(groups, key=len, reverse=True):
            rest = [i for i in g if i not in picked]
            if rest and len(picked) < n_test + n_val:
                picked.append(rest[0])
    test_v, val_v = tuple(sorted(picked[:n_test])), tuple(sorted(picked[n_test:]))

    # sampling weights: English vs the rest, and within a language each backend equally likely
    w = np.zeros(len(ids))
    langs_present = sorted(set(lang_of.values()))
    for k, i in enumerate(ids):
        lang = lang_of[i]
        share = opts.english_share if lang == "en" else 1.0 - opts.english_share
        n_lang = 1 if lang == "en" else max(1, len([x for x in langs_present if x != "en"]))
        if "en" not in langs_present or len(langs_present) == 1:
            share, n_lang = 1.0, len(langs_present)
        same = [j for j in ids if lang_of[j] == lang]
        n_backends = len({backend_of[j] for j in same})
        n_same_backend = len([j for j in same if backend_of[j] == backend_of[i]])
        w[k] = share / n_lang / n_backends / n_same_backend
        if i in picked:  # held-out voices at half weight: test and val stay a modest share of the data
            w[k] *= 0.5
    w = w / w.sum()

    sentences = {lang: load_sentences(lang) for lang in sorted(set(lang_of.values()))}
    test_s, val_s = set(), set()
    for items in sentences.values():
        for s in items:
            u = _unit_hash(opts.seed, "sentence", s.id)
            if u < opts.test_sentences:
                test_s.add(s.id)
            elif u < opts.test_sentences + opts.val_sentences:
                val_s.add(s.id)
    return Plan(ids, lang_of, w, test_v, val_v, emotions, sentences, frozenset(test_s), frozenset(val_s))


# ----------------------------------------------------------------------------------------- utterances


@dataclass
class Utterance:
    """One corpus item as the reader returns it."""

    index: int
    audio: np.ndarray  # float32 mono at ``sr`` (augmented speech)
    sr: int
    motion: object  # rig_mapping.FaceMotion at 30 fps (weights [T,52], head [T,6])
    phones: list[Phone]  # ARPAbet, seconds, aligned with ``audio``
    style: np.ndarray  # float32 [STYLE_DIM]: the speaker's SpeakerStyle.to_vector() before emotion scaling
    emotion: str
    intensity: int  # 1..3
    voice: str  # "backend:name"
    language: str
    text: str
    sentence_id: str
    split: str
    prosody: dict[str, float] = field(default_factory=dict)
    augment: dict = field(default_factory=dict)


def _resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    return resample(audio, int(sr), int(target))


@dataclass(frozen=True)
class Draw:
    """The random choices for one utterance (everything but synthesis, augmentation and performance)."""

    index: int
    voice: str
    sentence: object  # text.Sentence
    style: object  # performer SpeakerStyle
    emotion: str
    intensity: int
    prosody: dict[str, float]
    aug_seed: int
    perf_seed: int
    split: str


def draw_style(rng: np.random.Generator) -> object:
    """A speaker style from its own generator seeded by ``rng`` (one draw from ``rng``), as every corpus
    utterance, synthetic or real, gets one."""
    from motion_server.performer import sample_speaker_style

    return sample_speaker_style(np.random.default_rng(rng.integers(0, 2**63)))


def draw_intensity(rng: np.random.Generator) -> int:
    """Emotion intensity 1..3, uniform (the neutral preset too)."""
    return int(rng.integers(1, 4))


def draw_utterance(index: int, opts: CorpusOptions, plan: Plan) -> Draw:
    """Choices for utterance ``index``: a function of ``(opts.seed, index)`` and the plan only."""
    from motion_server.performer import emotion_preset

    rng = np.random.default_rng([int(opts.seed), int(index)])
    voice = plan.voices[int(rng.choice(len(plan.voices), p=plan.voice_weights))]
    items = plan.sentences[plan.voice_language[voice]]
    sentence = items[int(rng.integers(0, len(items)))]
    style = draw_style(rng)
    others = [e for e in plan.emotions if e != "neutral"]
    if "neutral" in plan.emotions and (not others or rng.random() < opts.neutral_share):
        emotion = "neutral"
    else:
        emotion = others[int(rng.integers(0, len(others)))]
    intensity = draw_intensity(rng)
    # per-utterance speaker jitter on top of the emotion's prosody; voice quality varies from take to take
    # too, so no emotion has one fixed spectral tilt or tremor
    jitter = {"rate": float(rng.uniform(0.9, 1.1)), "pitch": float(rng.uniform(0.92, 1.08)),
              "pitch_range": float(rng.uniform(0.85, 1.15)), "energy": 1.0,
              "effort": float(rng.uniform(0.85, 1.15)), "tremor": float(rng.uniform(0.7, 1.3)),
              "breath": float(rng.uniform(0.7, 1.3))}
    preset = emotion_preset(emotion, intensity)
    pro = {k: float(np.clip(jitter[k] * preset.prosody.get(k, d), *_JITTER_LIMITS.get(k, PROSODY_RANGES[k])))
           for k, d in PROSODY_DEFAULTS.items()}
    aug_seed, perf_seed = (int(x) for x in rng.integers(0, 2**63, 2))
    return Draw(int(index), voice, sentence, style, emotion, intensity, pro, aug_seed, perf_seed,
                plan.split_of(voice, sentence.id))


def make_utterance(index: int, opts: CorpusOptions, plan: Plan, babble: Sequence[np.ndarray] = ()) -> dict:
    """Build utterance ``index`` (depends only on ``opts.seed``, ``index``, the plan and ``babble``)."""
    from motion_server.performer import perform

    from .augment import random_augment
    from .speech import Prosody, synthesize

    d = draw_utterance(index, opts, plan)
    voice, sentence, style, emotion, intensity, pro = d.voice, d.sentence, d.style, d.emotion, d.intensity, d.prosody
    aug_rng, perf_rng = np.random.default_rng(d.aug_seed), np.random.default_rng(d.perf_seed)

    try:
        speech = synthesize(sentence.text, voice, Prosody.from_dict(pro))
    except Exception as exc:  # name the utterance so a failure can be reproduced
        raise CorpusError(f"utterance {index}: {voice} failed on {sentence.id} {sentence.text!r}: {exc}") from exc
    audio = _resample(speech.audio, speech.sr, SR)
    phones = pad_to(speech.phones, audio.size / SR)
    if opts.augment:
        res = random_augment(audio, SR, phones, aug_rng, babble_sources=babble)
        out_audio, phones, aug_params, timed_clean = res.audio, res.phones, res.params, res.clean
    else:
        out_audio, aug_params, timed_clean = audio, {}, audio
    motion = perform(phones, timed_clean, SR, style, emotion, intensity, perf_rng, fps=FPS)
    return {
        "index": int(index), "audio": out_audio, "clean": timed_clean, "phones": phones, "motion": motion,
        "style": style.to_vector(), "emotion": emotion, "intensity": intensity, "voice": voice,
        "language": plan.voice_language[voice], "text": sentence.text, "sentence_id": sentence.id,
        "split": d.split, "prosody": pro, "augment": aug_params,
    }


# ----------------------------------------------------------------------------------------------- shards


def _prosody_row(row: np.ndarray) -> dict[str, float]:
    """A shard's prosody columns as a full Prosody dict (shards from before voice quality hold 4 columns)."""
    if row.size > len(PROSODY_DEFAULTS):
        raise CorpusError(f"a shard holds {row.size} prosody columns but this TalkRig knows "
                          f"{len(PROSODY_DEFAULTS)}; update TalkRig to read this corpus")
    return {**PROSODY_DEFAULTS, **dict(zip(PROSODY_DEFAULTS, (float(x) for x in row), strict=False))}


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """npz with fixed zip timestamps and sorted members, so equal content gives equal bytes."""
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.npz"


def build_shard(k: int, opts: CorpusOptions, plan: Plan, out_dir: Path) -> dict:
    """Synthesize shard ``k`` and write it atomically; returns its manifest entry."""
    utts: list[dict] = []
    for j in range(opts.shard_size):
        babble = [u["clean"] for u in utts[-3:]]  # earlier speech in this shard: deterministic babble
        utts.append(make_utterance(k * opts.shard_size + j, opts, plan, babble))
    return write_shard(k, utts, out_dir)


def shard_arrays(utts: Sequence[dict]) -> dict[str, np.ndarray]:
    """The npz arrays of one shard from utterance dicts (as ``make_utterance`` returns them; the real-speech
    builder makes the same). An empty list gives a valid shard with no utterances."""
    from motion_server.performer.style import EMOTIONS, STYLE_FIELDS

    def offsets(lengths: list[int]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def cat(parts: list[np.ndarray], dtype: type, width: tuple[int, ...] = ()) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, *width), dtype)

    ph = [phones_to_arrays(u["phones"]) for u in utts]
    return {
        "format_version": np.array(FORMAT_VERSION, np.int32),
        "index": np.array([u["index"] for u in utts], np.int64),
        "sr": np.array(SR, np.int32),
        "fps": np.array(FPS, np.float32),
        "audio": cat([_pcm16(u["audio"]) for u in utts], np.int16),
        "audio_offsets": offsets([u["audio"].size for u in utts]),
        "weights": cat([u["motion"].weights for u in utts], np.float32, (52,)),
        "head": cat([u["motion"].head for u in utts], np.float32, (6,)),
        "frame_offsets": offsets([u["motion"].n_frames for u in utts]),
        "phone_ids": cat([p["ids"] for p in ph], np.int16),
        "phone_start": cat([p["start"] for p in ph], np.float32),
        "phone_end": cat([p["end"] for p in ph], np.float32),
        "phone_stress": cat([p["stress"] for p in ph], np.int8),
        "phone_offsets": offsets([len(p["ids"]) for p in ph]),
        "style": (np.stack([u["style"] for u in utts]) if utts else np.zeros((0, len(STYLE_FIELDS)))).astype(np.float32),
        "emotion": np.array([EMOTIONS.index(u["emotion"]) for u in utts], np.int16),
        "intensity": np.array([u["intensity"] for u in utts], np.int8),
        "prosody": np.array([[u["prosody"].get(k, d) for k, d in PROSODY_DEFAULTS.items()] for u in utts],
                            np.float32).reshape(len(utts), len(PROSODY_DEFAULTS)),
        "voice": np.array([u["voice"] for u in utts], dtype=str),
        "language": np.array([u["language"] for u in utts], dtype=str),
        "text": np.array([u["text"] for u in utts], dtype=str),
        "sentence_id": np.array([u["sentence_id"] for u in utts], dtype=str),
        "split": np.array([u["split"] for u in utts], dtype=str),
        "augment": np.array([json.dumps(u["augment"], sort_keys=True) for u in utts], dtype=str),
    }


def write_shard(k: int, utts: Sequence[dict], out_dir: Path) -> dict:
    """Write shard ``k`` of ``utts`` atomically; returns its manifest entry."""
    arrays = shard_arrays(utts)
    path = Path(out_dir) / shard_name(k)
    _write_npz(path, arrays)
    return _entry(k, path, arrays)


def _entry(k: int, path: Path, arrays: dict) -> dict:
    seconds = float(np.diff(arrays["audio_offsets"]).sum()) / SR
    counts = {s: int(np.sum(arrays["split"] == s)) for s in SPLITS}
    sec_split = {s: float(np.diff(arrays["audio_offsets"])[arrays["split"] == s].sum()) / SR for s in SPLITS}
    return {"file": path.name, "sha256": _sha256(path), "n": int(arrays["index"].size), "seconds": round(seconds, 3),
            "counts": counts, "seconds_by_split": {s: round(v, 3) for s, v in sec_split.items()}, "shard": k}


def _shard_worker(args: tuple[int, dict, str]) -> dict:
    k, opts_d, out = args
    opts = CorpusOptions(**{**opts_d, **{t: tuple(opts_d[t]) for t in ("voices", "languages", "emotions")}})
    return build_shard(k, opts, make_plan(opts), Path(out))


# --------------------------------------------------------------------------------------------- manifest


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def manifest_totals(identity: dict, seed: int, shards: dict[int, dict]) -> dict:
    """The manifest fields every corpus has (format, options, totals, label vocabularies, shard list)."""
    from motion_server.performer.style import EMOTIONS, STYLE_FIELDS

    ordered = [shards[k] for k in sorted(shards)]
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "seed": seed, "options": identity, "sr": SR, "fps": FPS,
        "hours": round(sum(s["seconds"] for s in ordered) / 3600.0, 4),
        "utterances": sum(s["n"] for s in ordered),
        "counts": {sp: sum(s["counts"][sp] for s in ordered) for sp in SPLITS},
        "hours_by_split": {sp: round(sum(s["seconds_by_split"][sp] for s in ordered) / 3600.0, 4) for sp in SPLITS},
        "emotions": list(EMOTIONS), "style_fields": list(STYLE_FIELDS),
        "phone_symbols": list(arpabet_symbols()),
        "shards": ordered,
    }


def _manifest(opts: CorpusOptions, plan: Plan, shards: dict[int, dict]) -> dict:
    return {
        **manifest_totals(opts.identity(), opts.seed, shards), "hours_target": opts.hours,
        "voices": list(plan.voices),
        "voice_languages": {v: plan.voice_language[v] for v in plan.voices},
        "splits": {"test_voices": list(plan.test_voices), "val_voices": list(plan.val_voices),
                   "test_sentences": sorted(plan.test_sentences), "val_sentences": sorted(plan.val_sentences),
                   "rule": "test if voice or sentence held out for test; else val if either held out for val; else train"},
    }


def load_existing(out: Path, identity: dict) -> dict[int, dict]:
    """Completed shards from an earlier run with the same options ``identity`` (verified by hash). A
    corpus made with other options is never touched: the error says what differs."""
    mpath = out / MANIFEST
    done: dict[int, dict] = {}
    if mpath.is_file():
        try:
            old = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorpusError(f"cannot read {mpath} ({exc}); choose another --out, or delete the manifest "
                              "and the shards to start over") from exc
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise CorpusError(f"{mpath} is not a TalkRig synthetic corpus manifest; choose another --out")
        if old.get("options") != identity:
            have, want = old.get("options") or {}, identity
            diff = ", ".join(f"{k}: {have.get(k)!r} there, {want.get(k)!r} now" for k in sorted(set(have) | set(want))
                             if have.get(k) != want.get(k))
            why = ("it was made by another TalkRig version, whose audio or motion differ; "
                   if {"performer_version", "format_version"} & {k for k in want if have.get(k) != want.get(k)}
                   else "")
            raise CorpusError(f"{out} holds a corpus built with different options ({diff}); {why}"
                              "use the same seed/options to resume or choose a new --out")
        for s in old.get("shards", []):
            p = out / s["file"]
            if p.is_file() and _sha256(p) == s["sha256"]:
                done[int(s["shard"])] = s
    elif any(out.glob("shard-*.npz")):
        raise CorpusError(f"{out} has shards but no {MANIFEST}; refusing to mix corpora, choose an empty --out")
    return done


def build_corpus(out_dir: str | Path, opts: CorpusOptions, workers: int = 1, progress: bool = True,
                 max_shards: int | None = None) -> dict:
    """Build (or resume) a corpus in ``out_dir`` until ``opts.hours`` of audio exist; returns the manifest.

    ``max_shards`` stops after that many new shards (for tests and partial runs).
    """
    from tqdm import tqdm

    if opts.hours <= 0:
        raise CorpusError(f"--hours must be > 0, got {opts.hours}")
    if opts.shard_size < 1:
        raise CorpusError("shard size must be >= 1")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"--out {out} is a file; the corpus needs a folder")
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(opts)
    done = load_existing(out, opts.identity())
    for stale in out.glob("*.partial"):
        stale.unlink()
    target = opts.hours * 3600.0
    per_shard = opts.shard_size * _EST_SECONDS_PER_UTT
    n_total = max(1, math.ceil(target / per_shard))
    built = 0
    opts_d = json.loads(json.dumps(opts.__dict__))
    bar = tqdm(total=round(target), unit="s audio", desc="synth corpus", disable=not progress)

    def advance(seconds: float) -> None:
        bar.update(max(0, min(round(seconds), bar.total - bar.n)))

    advance(sum(s["seconds"] for s in done.values()))
    runner = ShardRunner(workers)
    try:
        while True:
            have = sum(s["seconds"] for s in done.values())
            if have >= target or (max_shards is not None and built >= max_shards):
                break
            if len(done) >= n_total:  # durations ran short of the estimate: plan more shards
                mean = have / max(len(done), 1)
                n_total = len(done) + max(1, math.ceil((target - have) / max(mean, 1.0)))
            todo = [k for k in range(n_total) if k not in done]
            if max_shards is not None:
                todo = todo[: max_shards - built]
            results = runner.run(todo, lambda k: build_shard(k, opts, plan, out), _shard_worker,
                                 lambda k: (k, opts_d, str(out)))
            reached = False
            for entry in results:
                done[entry["shard"]] = entry
                built += 1
                advance(entry["seconds"])
                write_json_atomic(out / MANIFEST, _manifest(opts, plan, done))
                if sum(s["seconds"] for s in _trim(done, target).values()) >= target and _contiguous(done):
                    reached = True
                    break
            if reached:
                break
    finally:
        runner.close()
        bar.close()
    # shards past the first point where the target was reached are not part of this corpus
    manifest = _manifest(opts, plan, _trim(done, target))
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


class ShardRunner:
    """Builds shards here (one worker, or one shard to do) or in a spawn pool kept across calls; results
    come in completion order, each a manifest entry."""

    def __init__(self, workers: int) -> None:
        self.workers = int(workers)
        self._pool = None
        self._pending = 0  # shards handed to the pool whose results have not come back

    def run(self, todo: Sequence[int], build: Callable[[int], dict], worker: Callable[[tuple], dict],
            worker_args: Callable[[int], tuple]) -> Iterator[dict]:
        if self.workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            if self._pool is None:
                self._pool = mp.get_context("spawn").Pool(self.workers)
            self._pending += len(todo)
            return self._counted(self._pool.imap_unordered(worker, [worker_args(k) for k in todo]))
        return (build(k) for k in todo)

    def _counted(self, results: Iterator[dict]) -> Iterator[dict]:
        for r in results:
            self._pending -= 1
            yield r

    def close(self) -> None:
        if self._pool is not None:
            if self._pending:  # stopped early (target reached, error, Ctrl-C): drop the shards in flight
                self._pool.terminate()
            else:
                # idle workers exit on their own, so what they hold (tqdm's lock is a semaphore) is
                # released; killing them left "leaked semaphore" warnings after every build
                self._pool.close()
            self._pool.join()
            self._pool = None


def _contiguous(done: dict[int, dict]) -> bool:
    return sorted(done) == list(range(len(done)))


def _trim(done: dict[int, dict], target: float) -> dict[int, dict]:
    """The contiguous prefix of shards up to the one that reaches ``target`` seconds (keeps the shard count
    independent of worker scheduling); if the prefix has gaps (a partial run), every done shard is kept."""
    keep: dict[int, dict] = {}
    total = 0.0
    for k in range(max(done, default=-1) + 1):
        if k not in done:
            return done
        keep[k] = done[k]
        total += done[k]["seconds"]
        if total >= target:
            break
    return keep


# ----------------------------------------------------------------------------------------------- reader


class CorpusReader:
    """Read a synthetic corpus folder.

    >>> reader = CorpusReader("/work/corpus", "train")      # split: "train", "val", "test" or "all"
    >>> len(reader)                                          # utterances in that split (from the manifest)
    >>> for utt in reader:                                   # shards in order, utterances in order
    ...     utt.audio, utt.sr          # float32 mono 16 kHz (augmented), sample rate
    ...     utt.motion                 # FaceMotion: .weights [T,52] in ARKit order, .head [T,6], fps 30
    ...     utt.phones                 # list[Phone] (ARPAbet, seconds) aligned with utt.audio
    ...     utt.style                  # float32 [STYLE_DIM] SpeakerStyle vector (manifest "style_fields")
    ...     utt.emotion, utt.intensity # e.g. "happy", 2
    ...     utt.voice, utt.text        # "espeak:en-us", the sentence

    Frame ``t`` of ``motion`` is at ``t / 30`` s of ``audio``. ``manifest`` holds options, splits and counts.
    Shards are verified against the manifest's sha256 when ``verify=True``.
    """

    def __init__(self, corpus_dir: str | Path, split: str = "train", verify: bool = False) -> None:
        self.dir = Path(corpus_dir)
        mpath = self.dir / MANIFEST
        if not mpath.is_file():
            raise CorpusError(f"{self.dir} has no {MANIFEST}; build one with: talkrig synth --out {self.dir} --hours 1")
        self.manifest = json.loads(mpath.read_text(encoding="utf-8"))
        if self.manifest.get("format") != FORMAT:
            raise CorpusError(f"{mpath} is not a TalkRig synthetic corpus manifest")
        if split not in (*SPLITS, "all"):
            raise CorpusError(f"split must be one of {SPLITS} or 'all', got {split!r}")
        self.split = split
        if verify:
            for s in self.manifest["shards"]:
                if _sha256(self.dir / s["file"]) != s["sha256"]:
                    raise CorpusError(f"{s['file']} does not match the manifest hash; rebuild it (rerun talkrig synth)")

    def __len__(self) -> int:
        if self.split == "all":
            return int(self.manifest["utterances"])
        return int(self.manifest["counts"][self.split])

    @property
    def hours(self) -> float:
        return float(self.manifest["hours"] if self.split == "all" else self.manifest["hours_by_split"][self.split])

    def __iter__(self) -> Iterator[Utterance]:
        for s in self.manifest["shards"]:
            yield from self.read_shard(self.dir / s["file"])

    def read_shard(self, path: Path) -> Iterator[Utterance]:
        from rig_mapping import FaceMotion

        emotions = self.manifest["emotions"]
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        sr, fps = int(a["sr"].reshape(-1)[0]), float(a["fps"].reshape(-1)[0])
        ao, fo, po = a["audio_offsets"], a["frame_offsets"], a["phone_offsets"]
        for i in range(a["index"].size):
            split = str(a["split"][i])
            if self.split != "all" and split != self.split:
                continue
            p0, p1 = po[i], po[i + 1]
            yield Utterance(
                index=int(a["index"][i]),
                audio=a["audio"][ao[i]:ao[i + 1]].astype(np.float32) / 32767.0,
                sr=sr,
                motion=FaceMotion.from_arrays(a["weights"][fo[i]:fo[i + 1]], a["head"][fo[i]:fo[i + 1]], fps=fps),
                phones=phones_from_arrays(a["phone_ids"][p0:p1], a["phone_start"][p0:p1], a["phone_end"][p0:p1],
                                          a["phone_stress"][p0:p1]),
                style=a["style"][i].copy(),
                emotion=emotions[int(a["emotion"][i])],
                intensity=int(a["intensity"][i]),
                voice=str(a["voice"][i]),
                language=str(a["language"][i]),
                text=str(a["text"][i]),
                sentence_id=str(a["sentence_id"][i]),
                split=split,
                prosody=_prosody_row(a["prosody"][i]),
                augment=json.loads(str(a["augment"][i])),
            )
