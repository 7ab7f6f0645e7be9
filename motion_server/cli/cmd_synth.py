"""``talkrig synth``: build (or resume) the synthetic speech -> face-motion corpus."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="build a synthetic training corpus (speech synthesis + procedural performer)",
        description="Synthesize speech with Festival/Flite/eSpeak NG, augment it, animate it with the procedural "
        "performer and write reproducible npz shards plus MANIFEST.json. Rerun the same command to resume. "
        "With --real DIR, real recordings take the synthesizer's place: transcripts from sidecar .txt/.lab files, "
        "Kaldi text/utt2spk, LJSpeech-style metadata csv, or the Whisper recogniser; phones from the forced aligner; "
        "skipped files and why in OUT/REPORT.json.",
    )
    p.add_argument("--out", help="corpus folder (created; an existing corpus with the same options is resumed)")
    p.add_argument("--real", metavar="DIR", help="build the corpus from the real speech recordings under DIR "
                   "(Kaldi test/ speakers go to the test split only)")
    p.add_argument("--hours", type=float, default=None,
                   help="hours of audio to produce (default 1; with --real: cap, default all recordings)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="with --real: use at most N recordings")
    p.add_argument("--seed", type=int, default=0, help="corpus seed: same seed and options give identical shards")
    p.add_argument("--voices", nargs="+", default=[], metavar="VOICE",
                   help="voice ids (festival:kal_diphone, espeak:en-us, ...) or backend names; default all installed")
    p.add_argument("--languages", nargs="+", default=[], metavar="LANG", help="base languages, e.g. en de fr")
    p.add_argument("--emotions", nargs="+", default=[], metavar="EMOTION", help="subset of the emotion presets")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: cores)")
    p.add_argument("--shard-size", type=int, default=32, help="utterances per shard (default 32)")
    p.add_argument("--no-augment", action="store_true", help="clean synthetic speech only")
    p.add_argument("--list-voices", action="store_true", help="list installed voices and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from motion_server.synth.corpus import CorpusError, CorpusOptions, build_corpus
    from motion_server.synth.speech import SpeechError, list_voices

    if args.list_voices:
        for v in list_voices():
            print(f"{v.id:34s} {v.language:16s} {v.gender}")
        return 0
    if not args.out:
        print("talkrig synth: --out DIR is required (the corpus folder)", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("talkrig synth: --workers must be >= 1", file=sys.stderr)
        return 2
    if args.real is not None:
        return _run_real(args)
    if args.limit is not None:
        print("talkrig synth: --limit only applies with --real DIR", file=sys.stderr)
        return 2
    opts = CorpusOptions(seed=args.seed, hours=1.0 if args.hours is None else args.hours, voices=tuple(args.voices), languages=tuple(args.languages),
                         emotions=tuple(args.emotions), shard_size=args.shard_size, augment=not args.no_augment)
    try:
        m = build_corpus(args.out, opts, workers=args.workers, progress=True)
    except (CorpusError, SpeechError) as exc:
        print(f"talkrig synth: {exc}", file=sys.stderr)
        return 1
    c = m["counts"]
    print(f"{args.out}: {m['hours']:.3f} h, {m['utterances']} utterances "
          f"(train {c['train']}, val {c['val']}, test {c['test']}), {len(m['shards'])} shards; "
          f"held-out voices: test {m['splits']['test_voices']}, val {m['splits']['val_voices']}")
    return 0


def _run_real(args: argparse.Namespace) -> int:
    from motion_server.synth.corpus import CorpusError
    from motion_server.synth.real import REPORT, RealOptions, build_real_corpus

    unused = [flag for flag, v in (("--voices", args.voices), ("--languages", args.languages),
                                   ("--emotions", args.emotions), ("--no-augment", args.no_augment)) if v]
    if unused:
        print(f"talkrig synth: {', '.join(unused)} do not apply with --real (real speech is neutral, English and "
              "not augmented); leave them out", file=sys.stderr)
        return 2
    opts = RealOptions(source="", seed=args.seed, hours=args.hours, limit=args.limit, shard_size=args.shard_size)
    try:
        m, rep = build_real_corpus(args.real, args.out, opts, workers=args.workers, progress=True)
    except CorpusError as exc:
        print(f"talkrig synth: {exc}", file=sys.stderr)
        return 1
    c, sp = m["counts"], rep["speakers"]
    print(f"{args.out}: {m['hours']:.3f} h, {m['utterances']} utterances from {rep['selected']} of {rep['found']} "
          f"recordings (train {c['train']}, val {c['val']}, test {c['test']}; speakers {sp['train']}/{sp['val']}/"
          f"{sp['test']}), {len(m['shards'])} shards; transcripts: "
          + ", ".join(f"{k} {v}" for k, v in sorted(rep["transcript_sources"].items())))
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(rep["skipped_by_reason"].items()))
    print(f"talkrig synth: skipped {rep['skipped_count']} of {rep['selected']} recordings"
          + (f" ({reasons})" if reasons else "") + f"; see {Path(args.out) / REPORT}", file=sys.stderr)
    return 0
