"""``talkrig synth``: build (or resume) the synthetic speech -> face-motion corpus."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="build a synthetic training corpus (speech synthesis + procedural performer)",
        description="Synthesize speech with Festival/Flite/eSpeak NG, augment it, animate it with the procedural "
        "performer and write reproducible npz shards plus MANIFEST.json. Rerun the same command to resume.",
    )
    p.add_argument("--out", help="corpus folder (created; an existing corpus with the same options is resumed)")
    p.add_argument("--hours", type=float, default=1.0, help="hours of audio to produce (default 1)")
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
    opts = CorpusOptions(seed=args.seed, hours=args.hours, voices=tuple(args.voices), languages=tuple(args.languages),
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
