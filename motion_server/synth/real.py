"""Real speech recordings -> a training corpus in the synthetic corpus's format (``talkrig synth --real``).

Each recording's words come from, in this order: a sidecar ``<stem>.txt`` / ``<stem>.lab``; a Kaldi-style
``text`` file anywhere under the folder (``<utt-id> TEXT`` lines, speakers from ``utt2spk`` beside it); an
LJSpeech-style ``metadata*.csv`` / ``transcript.csv`` (``id|text|normalized``); else the project's recogniser
(Whisper tiny.en, English assumed) transcribes it. The pocketsphinx forced aligner times the phones and the
procedural performer animates them with a sampled speaker style, neutral, exactly as ``corpus.py`` labels
synthetic speech. The audio is kept as recorded (16 kHz, no augmentation).

Splits hold out whole speakers: speakers of a Kaldi ``test/`` set go to ``test`` only; a few of the other
speakers (``val_share``, chosen by seed) to ``val``; the rest to ``train``. A recording without speaker
information counts as spoken by the speaker of its folder's labelled recordings, else by its folder.

Clip order is a hash of the seed and the clip's path, so ``--limit`` / ``--hours`` take a spread sample and
shard ``k`` holds clips ``[k * shard_size, (k + 1) * shard_size)`` of that order. A clip's performance depends
only on the seed and its path. A clip that cannot be decoded, transcribed or aligned is skipped and listed
with its reason in ``REPORT.json`` (and in its shard's manifest entry, so a resumed build reports it too).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from motion_server.options import AUDIO_SUFFIXES

from .corpus import (
    FORMAT_VERSION,
    FPS,
    MANIFEST,
    PROSODY_DEFAULTS,
    SPLITS,
    SR,
    CorpusError,
    ShardRunner,
    _unit_hash,
    draw_intensity,
    draw_style,
    load_existing,
    manifest_totals,
    write_json_atomic,
    write_shard,
)

REPORT = "REPORT.json"
TRANSCRIPT_SOURCES = ("sidecar", "kaldi", "csv", "recognised")
EMOTION = "neutral"  # read speech
MIN_SECONDS = 0.3  # shorter clips carry no phones worth aligning
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RealOptions:
    source: str  # the folder of recordings (resolved)
    seed: int = 0
    hours: float | None = None  # cap on total audio (from the files' headers); None = everything
    limit: int | None = None  # cap on the number of recordings; None = all
    shard_size: int = 32
    val_share: float = 0.05  # share of the non-test speakers held out for val
    recogniser: str = "tiny.en"  # transcribes recordings without a transcript

    def identity(self) -> dict:
        """Everything that changes a shard's content (``hours`` and ``limit`` only decide how many)."""
        from motion_server.performer import PERFORMER_VERSION

        d = {k: getattr(self, k) for k in ("source", "seed", "shard_size", "val_share", "recogniser")}
        return {**d, "kind": "real", "augment": False, "emotion": EMOTION, "performer_version": PERFORMER_VERSION,
                "format_version": FORMAT_VERSION}


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the source folder, '/'-separated
    utt_id: str
    speaker: str  # "<folder name>/<speaker>"
    text: str | None  # None: the recogniser transcribes it
    transcript_source: str  # one of TRANSCRIPT_SOURCES
    kaldi_test: bool  # listed in a Kaldi test/ set
    seconds: float  # from the file header; 0 when the header does not say
    split: str = ""


class SkipClip(Exception):
    """This recording cannot become an utterance; the message says why."""


# ------------------------------------------------------------------------------------------ discovery


def _kaldi_tables(root: Path) -> tuple[dict[str, tuple[str, str | None, bool]], int]:
    """utt-id -> (text, speaker or None, from a test/ set) over every Kaldi ``text`` file under ``root``."""
    out: dict[str, tuple[str, str | None, bool]] = {}
    files = sorted(p for p in root.rglob("text") if p.is_file())
    for tf in files:
        spk: dict[str, str] = {}
        if (tf.parent / "utt2spk").is_file():
            for line in (tf.parent / "utt2spk").read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    spk[parts[0]] = parts[1]
        is_test = tf.parent.name.lower() == "test"
        for line in tf.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.strip().split(maxsplit=1)
            if len(parts) == 2:
                out[parts[0]] = (parts[1].strip(), spk.get(parts[0]), is_test)
    return out, len(files)


def _csv_tables(root: Path) -> dict[str, str]:
    """id -> text from LJSpeech-style ``id|text|normalized`` files (the normalized column when given)."""
    out: dict[str, str] = {}
    files = sorted(p for p in root.rglob("*.csv") if p.is_file()
                   and (p.name.startswith("metadata") or p.name == "transcript.csv"))
    for cf in files:
        for line in cf.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("|")
            if len(parts) >= 2:
                text = (parts[2] if len(parts) >= 3 and parts[2].strip() else parts[1]).strip()
                if text:
                    out.setdefault(parts[0].strip(), text)
    return out


def _sidecar(path: Path) -> str | None:
    for suffix in (".txt", ".lab"):
        p = path.with_suffix(suffix)
        if p.is_file():
            text = p.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text
    return None


def _header_seconds(path: Path) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # a format libsndfile cannot read (or a broken file): counted as 0 for --hours
        return 0.0


def audio_files(root: Path, exclude: Path | None = None) -> list[Path]:
    """Audio files under ``root`` (sorted; hidden files and the ``exclude`` folder left out)."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.suffix.lower() not in AUDIO_SUFFIXES or any(part.startswith(".") for part in rel.parts):
            continue
        if exclude is not None and p.resolve().is_relative_to(exclude):
            continue
        if p.is_file():
            out.append(p)
    return sorted(out)


def discover(root: Path, exclude: Path | None = None) -> list[Clip]:
    """Every recording under ``root`` with its transcript (or None), speaker and whether it is Kaldi test."""
    root = Path(root)
    if not root.exists():
        raise CorpusError(f"--real {root} does not exist; give the folder that holds the recordings "
                          "(e.g. --real ../shared/data/real_speech/speechocean762)")
    if not root.is_dir():
        raise CorpusError(f"--real {root} is a file; give the folder that holds the recordings")
    files = audio_files(root, exclude)
    if not files:
        raise CorpusError(f"--real {root} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}); "
                          "point --real at the folder of recordings, or put them there")
    kaldi, _ = _kaldi_tables(root)
    csv = _csv_tables(root)
    name = root.resolve().name
    raw = []
    for p in files:
        stem, rel = p.stem, p.relative_to(root).as_posix()
        k = kaldi.get(stem)
        side = _sidecar(p)
        if side is not None:
            text, source = side, "sidecar"
        elif k is not None:
            text, source = k[0], "kaldi"
        elif stem in csv:
            text, source = csv[stem], "csv"
        else:
            text, source = None, "recognised"
        raw.append((p, rel, stem, text, source, k[1] if k else None, bool(k and k[2])))
    # a recording with no utt2spk entry belongs to the one speaker its folder's labelled recordings name
    folder_speakers: dict[str, set[str]] = {}
    for _, rel, _, _, _, spk, _ in raw:
        if spk is not None:
            folder_speakers.setdefault(str(Path(rel).parent), set()).add(spk)
    clips = []
    for p, rel, stem, text, source, spk, test in raw:
        folder = str(Path(rel).parent)
        if spk is None:
            known = folder_speakers.get(folder, set())
            spk = next(iter(known)) if len(known) == 1 else (folder if folder != "." else "")
        speaker = f"{name}/{spk}".rstrip("/")
        clips.append(Clip(rel, stem, speaker, text, source, test, _header_seconds(p)))
    return clips


def assign_splits(clips: list[Clip], seed: int, val_share: float) -> list[Clip]:
    """Whole speakers per split: any speaker with a Kaldi test recording -> test; ``val_share`` of the rest
    (at least one when there are 4 or more) -> val; the others -> train."""
    from dataclasses import replace

    test = {c.speaker for c in clips if c.kaldi_test}
    rest = sorted({c.speaker for c in clips} - test, key=lambda s: _unit_hash(seed, "speaker", s))
    n_val = round(val_share * len(rest))
    if n_val == 0 and len(rest) >= 4 and val_share > 0:
        n_val = 1
    val = set(rest[:n_val])
    return [replace(c, split="test" if c.speaker in test else "val" if c.speaker in val else "train") for c in clips]


def select(clips: list[Clip], opts: RealOptions) -> list[Clip]:
    """The clips this corpus holds, in shard order: hash order, cut at ``limit`` and at ``hours``."""
    order = sorted(clips, key=lambda c: (_unit_hash(opts.seed, "clip", c.path), c.path))
    if opts.limit is not None:
        order = order[: opts.limit]
    if opts.hours is not None:
        total, keep = 0.0, []
        for c in order:
            if total >= opts.hours * 3600.0:
                break
            keep.append(c)
            total += c.seconds
        order = keep
    return order


# ----------------------------------------------------------------------------------------- utterances

_RECOGNISER: dict[str, object] = {}  # one per process, loaded on first need


def _recognise(audio: np.ndarray, model: str) -> str:
    from dataclasses import replace

    from motion_server.transcribe import Recogniser, RecogniserError, WeightsMissing, decide

    try:
        rec = _RECOGNISER.get(model)
        if rec is None:
            # one thread and no language detector: the same transcript whatever the worker count; the
            # folder is taken to be English (tiny.en transcribes English only)
            rec = _RECOGNISER[model] = Recogniser(model, language_model=None, threads=1)
        tr = rec.transcribe(audio, SR)
    except (RecogniserError, WeightsMissing) as exc:
        raise SkipClip(f"no transcript, and the recogniser could not run ({exc})") from None
    d = decide(replace(tr, language="en", language_probability=1.0))
    if not d.use:
        why = d.reason.split("; the audio alone", 1)[0]  # the live pipeline's wording; here the clip is dropped
        raise SkipClip(f"no transcript; recognised {tr.text!r} not trusted: {why}")
    if d.unsure:
        # a wrong word puts wrong closures in the targets, so a recognised clip is used only when every
        # word is sure
        raise SkipClip(f"no transcript; the recogniser was unsure of: {', '.join(w.text for w in d.unsure[:8])}")
    return tr.text


def _clip_seed(seed: int, path: str) -> list[int]:
    return [int(seed), int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big")]


def make_real_utterance(index: int, clip: Clip, root: Path, opts: RealOptions) -> dict:
    """One utterance dict (as ``corpus.make_utterance`` returns) from a recording, or :class:`SkipClip`."""
    from motion_server.align import AlignError, align_transcript
    from motion_server.audio.io import AudioError, load_audio
    from motion_server.performer import perform

    try:
        audio = load_audio(root / clip.path, sr=SR)
    except AudioError as exc:
        raise SkipClip(f"undecodable: {exc}") from None
    except OSError as exc:
        raise SkipClip(f"unreadable: {exc}") from None
    if audio.size / SR < MIN_SECONDS:
        raise SkipClip(f"too short ({audio.size / SR:.2f} s)")
    text = clip.text if clip.text is not None else _recognise(audio, opts.recogniser)
    try:
        phones = align_transcript(audio, SR, text)
    except AlignError as exc:
        raise SkipClip(f"unalignable: {exc}") from None
    if not any(p.word for p in phones):
        raise SkipClip("unalignable: no word of the transcript was found in the audio")
    rng = np.random.default_rng(_clip_seed(opts.seed, clip.path))
    style = draw_style(rng)
    intensity = draw_intensity(rng)
    perf_rng = np.random.default_rng(int(rng.integers(0, 2**63)))
    motion = perform(phones, audio, SR, style, EMOTION, intensity, perf_rng, fps=FPS)
    return {
        "index": int(index), "audio": audio, "phones": phones, "motion": motion, "style": style.to_vector(),
        "emotion": EMOTION, "intensity": intensity, "voice": f"real:{clip.speaker}", "language": "en",
        "text": text, "sentence_id": clip.utt_id, "split": clip.split,
        "prosody": dict(PROSODY_DEFAULTS),  # real speech: nothing was asked of a synthesizer
        "augment": {},
    }


def _inputs_hash(items: list[Clip]) -> str:
    return hashlib.sha256("\n".join(f"{c.path}\t{c.split}" for c in items).encode()).hexdigest()


def build_real_shard(k: int, items: list[Clip], root: Path, opts: RealOptions, out: Path) -> dict:
    """Shard ``k`` from its clips (the first clip has index ``k * shard_size``); skipped clips are listed."""
    align_log = logging.getLogger("motion_server.align")
    level = align_log.level
    align_log.setLevel(logging.ERROR)  # letter-rule guesses for rare words would flood the progress bar
    utts, kept, skipped = [], [], []
    try:
        for j, clip in enumerate(items):
            try:
                utts.append(make_real_utterance(k * opts.shard_size + j, clip, root, opts))
            except SkipClip as exc:
                skipped.append([clip.path, str(exc)])
                continue
            except Exception as exc:  # anything else one file does must not stop the build either
                skipped.append([clip.path, f"failed: {type(exc).__name__}: {exc}"])
                continue
            kept.append([clip.path, clip.transcript_source, clip.speaker])
    finally:
        align_log.setLevel(level)
    entry = write_shard(k, utts, out)
    return {**entry, "inputs": _inputs_hash(items), "clips": kept, "skipped": skipped}


def _real_worker(args: tuple) -> dict:
    k, items, root, opts_d, out = args
    return build_real_shard(k, [Clip(**c) for c in items], Path(root), RealOptions(**opts_d), Path(out))


# ------------------------------------------------------------------------------------------- the build


def _chunks(items: list[Clip], size: int) -> list[list[Clip]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _manifest(opts: RealOptions, clips: list[Clip], done: dict[int, dict]) -> dict:
    voices = sorted({f"real:{c.speaker}" for c in clips})
    by_split = {s: sorted({f"real:{c.speaker}" for c in clips if c.split == s}) for s in SPLITS}
    return {
        **manifest_totals(opts.identity(), opts.seed, done), "kind": "real", "source": opts.source,
        "hours_target": opts.hours, "limit": opts.limit, "voices": voices,
        "voice_languages": dict.fromkeys(voices, "en"),
        "splits": {"test_voices": by_split["test"], "val_voices": by_split["val"], "test_sentences": [],
                   "val_sentences": [],
                   "rule": "whole speakers: Kaldi test/ speakers -> test; a seeded few of the rest -> val; else train"},
    }


def report(manifest: dict, found: int, selected: list[Clip]) -> dict:
    """REPORT.json: what was used (with each clip's transcript source) and what was skipped, and why."""
    split_of = {c.path: c.split for c in selected}
    clips = [{"file": f, "transcript": src, "speaker": spk, "split": split_of.get(f, "")}
             for s in manifest["shards"] for f, src, spk in s.get("clips", [])]
    skipped = [{"file": f, "reason": why} for s in manifest["shards"] for f, why in s.get("skipped", [])]
    kinds = Counter(re.split(r"[:;(]", s["reason"], maxsplit=1)[0].strip() for s in skipped)
    return {
        "source": manifest["source"], "found": found, "selected": len(selected), "utterances": manifest["utterances"],
        "hours": manifest["hours"], "counts": manifest["counts"], "hours_by_split": manifest["hours_by_split"],
        "speakers": {s: len({c["speaker"] for c in clips if c["split"] == s}) for s in SPLITS},
        "transcript_sources": dict(Counter(c["transcript"] for c in clips)),
        "skipped_count": len(skipped), "skipped_by_reason": dict(kinds), "skipped": skipped, "clips": clips,
    }


def build_real_corpus(source: str | Path, out_dir: str | Path, opts: RealOptions | None = None, workers: int = 1,
                      progress: bool = True) -> tuple[dict, dict]:
    """Build (or resume) a corpus of the recordings under ``source`` in ``out_dir``; returns (manifest, report).

    ``opts.source`` is set from ``source``. Shards already built with the same options and clips are kept.
    """
    from dataclasses import replace

    from tqdm import tqdm

    root = Path(source)
    opts = replace(opts or RealOptions(source=""), source=str(root.resolve()))
    if opts.shard_size < 1:
        raise CorpusError("shard size must be >= 1")
    if opts.hours is not None and opts.hours <= 0:
        raise CorpusError(f"--hours must be > 0, got {opts.hours}")
    if opts.limit is not None and opts.limit < 1:
        raise CorpusError(f"--limit must be >= 1, got {opts.limit}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"--out {out} is a file; the corpus needs a folder")
    all_clips = assign_splits(discover(root, exclude=out.resolve()), opts.seed, opts.val_share)
    selected = select(all_clips, opts)
    chunks = _chunks(selected, opts.shard_size)
    out.mkdir(parents=True, exist_ok=True)
    done = {k: e for k, e in load_existing(out, opts.identity()).items()
            if k < len(chunks) and e.get("inputs") == _inputs_hash(chunks[k])}
    for stale in out.glob("*.partial"):
        stale.unlink()
    todo = [k for k in range(len(chunks)) if k not in done]
    opts_d, root_s = asdict(opts), str(root)
    bar = tqdm(total=len(selected), unit="clip", desc=f"real corpus {root.name}", disable=not progress)
    bar.update(sum(len(chunks[k]) for k in done))
    runner = ShardRunner(workers)
    try:
        results: Iterator[dict] = runner.run(
            todo, lambda k: build_real_shard(k, chunks[k], root, opts, out), _real_worker,
            lambda k: (k, [asdict(c) for c in chunks[k]], root_s, opts_d, str(out)))
        for entry in results:
            done[entry["shard"]] = entry
            bar.update(len(chunks[entry["shard"]]))
            bar.set_postfix(skipped=sum(len(e.get("skipped", [])) for e in done.values()))
            write_json_atomic(out / MANIFEST, _manifest(opts, selected, done))
    finally:
        runner.close()
        bar.close()
    manifest = _manifest(opts, selected, done)
    write_json_atomic(out / MANIFEST, manifest)
    rep = report(manifest, len(all_clips), selected)
    write_json_atomic(out / REPORT, rep)
    return manifest, rep
