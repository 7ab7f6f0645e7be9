"""``talkrig eval``: lip-sync and motion metrics for an engine and the baselines, on the same clips."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from motion_server.engine.registry import DEFAULT_ENGINE, ENGINE_NAMES
from motion_server.options import add_arguments
from rig_mapping.atomic import write_bytes_atomic

REPO = Path(__file__).resolve().parents[2]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score an engine (and the energy / recognised-phone baselines) with lip-sync and motion metrics",
        description="Score an engine and the baselines on real English recordings (phone metrics), on the "
        "held-out split of a synthetic corpus (ground-truth metrics) and/or on your own clips. Every suite also "
        "reports head, blink, brow and jaw statistics per clip and per suite (median over clips) next to real "
        "people's (motion_server/evaluation/references/motion_targets.json).",
    )
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINE_NAMES, help="engine to evaluate")
    p.add_argument("--model", help="checkpoint for the engine (diffusion)")
    p.add_argument("--suite", choices=("synthetic", "real", "all", "style", "robustness", "recognition"), default="real",
                   help="real: ../shared English recordings; synthetic: --data corpus test split (or --split val); all: both; "
                        "style: guidance sweep, reference recovery and style prior (diffusion; --data for the "
                        "synthetic parts); robustness: noisy clips and every shared recording; recognition: every shared "
                        "recording with and without automatic transcription")
    p.add_argument("--data", type=Path,
                   help="corpus folder built by `talkrig synth` (synthetic suite: its test split, or --split val; a `talkrig "
                        "synth --real` corpus is reported as suite 'real-corpus'; held-out speakers for --suite style)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="which split of the --data corpus to score (default test; val: choose settings there "
                        "without looking at the test split)")
    p.add_argument("--user-dir", type=Path,
                   help="folder of audio files with same-stem .txt transcripts and optional Live Link .csv truth")
    p.add_argument("--shared-dir", type=Path, default=REPO.parent / "shared",
                   help="shared folder holding data/speech/MANIFEST.json (default: ../shared next to the repo)")
    p.add_argument("--limit", type=int, help="at most N clips per suite")
    p.add_argument("--baselines", default="energy,procedural_recognised",
                   help="comma list of baselines to score alongside, or 'none'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--diversity-seeds", type=int, default=2,
                   help="run the evaluated engine with N seeds per clip and report the mean pairwise distance "
                        "of the results (default 2; 1 turns the diversity metric off)")
    p.add_argument("--transcript", choices=("given", "recognised", "none"), default="given", dest="transcript_mode",
                   help="what the evaluated engine gets (the clips' own transcripts always place the phones the "
                        "metrics score): given = the clip's transcript; recognised = nothing, as a user who types "
                        "none (speech is recognised and aligned); none = the audio alone")
    p.add_argument("--audio-only", action="store_true",
                   help="the same as --transcript none: lip sync from the audio alone, no recognition")
    p.add_argument("--asr-model", metavar="NAME|DIR", help="recogniser for --transcript recognised (default tiny.en)")
    add_arguments(p, only=("steps", "sampler"))  # the option table's limits; unset: the model's
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="where the evaluated engine runs (engines that take a device; default: the engine's)")
    p.add_argument("--json", type=Path, dest="json_out", help="write the full results here")
    p.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                   help="replace an existing --json file")
    p.add_argument("--per-clip", action="store_true", help="also print a row per clip and system")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"talkrig eval: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from motion_server.bench.machine import git_commit, machine_info, timestamp
    from motion_server.engine.base import GenerateOptions
    from motion_server.evaluation import metrics, report, suites
    from motion_server.evaluation.baselines import BASELINES
    from motion_server.evaluation.reference_targets import ReferenceError, load_targets
    from motion_server.evaluation.runner import build_systems, means, motion_stat_medians, run_clip

    if args.limit is not None and args.limit < 1:
        return _fail("--limit must be at least 1")
    if args.diversity_seeds < 1:
        return _fail("--diversity-seeds must be at least 1 (1 = no diversity metric)")
    if args.json_out and args.json_out.exists() and not args.overwrite:
        return _fail(f"{args.json_out} exists; pass --overwrite to replace it or choose another --json path")
    baselines = [] if args.baselines.strip() == "none" else [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        return _fail(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)} or 'none'")

    if args.suite in ("style", "robustness", "recognition"):
        if args.split != "test":
            return _fail(f"--split {args.split}: the {args.suite} checks use their own clips; --split applies to "
                         "--suite synthetic or all with --data CORPUS_DIR")
        return _run_checks(args)

    # (suite, clip generator, number of clips when known: for the progress bar)
    plan: list[tuple[str, Any, int | None]] = []
    if args.suite in ("real", "all"):
        try:
            suites.shared_speech_dir(args.shared_dir)
            plan.append(("real", lambda: suites.real_clips(args.shared_dir, args.limit),
                         len(suites.real_entries(args.shared_dir)[:args.limit])))
        except suites.SuiteError as exc:
            if args.suite == "real":
                return _fail(str(exc))
            print(f"talkrig eval: skipping real suite: {exc}", file=sys.stderr)
    if args.suite in ("synthetic", "all"):
        if args.data is None:
            if args.suite == "synthetic":
                return _fail("the synthetic suite needs --data CORPUS_DIR (build one with `talkrig synth`)")
            print("talkrig eval: skipping synthetic suite: no --data CORPUS_DIR given", file=sys.stderr)
        elif not args.data.is_dir():
            return _fail(f"--data {args.data} is not a folder; build a corpus with `talkrig synth`")
        else:
            held_out = _split_size(args.data, args.split)
            if held_out == 0:
                return _fail(f"--data {args.data} has no {args.split} utterances (its held-out speakers or "
                             f"sentences went to the other splits); choose the other --split, or build the "
                             "corpus from more recordings")
            # a corpus of real recordings (`talkrig synth --real`) is scored the same way, from its
            # aligned transcripts, and named for what it is
            total = args.limit if held_out is None else min(held_out, args.limit or held_out)  # progress bar
            plan.append((_corpus_suite_name(args.data),
                         lambda: suites.synthetic_clips(args.data, args.limit, args.split), total))
    scores_corpus = any(suite in ("synthetic", "real-corpus") for suite, _, _ in plan)
    if args.split != "test" and not scores_corpus:
        return _fail(f"--split {args.split} picks a split of the --data corpus, which suite {args.suite!r} does "
                     "not score; use it with --suite synthetic or all and --data CORPUS_DIR")
    if args.user_dir is not None:
        if not args.user_dir.is_dir():
            return _fail(f"--user-dir {args.user_dir} is not a folder (audio files with same-stem .txt transcripts)")
        n_audio = sum(1 for f in args.user_dir.iterdir() if f.suffix.lower() in suites.AUDIO_SUFFIXES)
        plan.append(("user", lambda: suites.user_clips(args.user_dir, args.limit),
                     min(n_audio, args.limit or n_audio)))
    if not plan:
        return _fail("nothing to evaluate")

    kwargs: dict[str, Any] = {}
    if args.model:
        kwargs["model"] = args.model
    if args.device:
        kwargs["device"] = args.device
    base = GenerateOptions(seed=args.seed, steps=args.steps, sampler=args.sampler)
    try:
        systems = build_systems(args.engine, kwargs, baselines)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        return _fail(f"cannot start engine {args.engine!r}: {exc}\n(fix: --model CHECKPOINT_DIR for the diffusion "
                     "engine, or --engine procedural / energy, which need no checkpoint)")
    mode = "none" if args.audio_only else args.transcript_mode
    if mode != "given":
        systems[0].uses_transcript = False
    base.transcribe = mode == "recognised"
    if mode == "recognised":
        from motion_server.pipeline import MotionPipeline, default_recogniser

        systems[0].engine = MotionPipeline(systems[0].engine, default_recogniser(args.asr_model))

    result: dict[str, Any] = {
        "format": "talkrig-eval", "version": 1, "engine": args.engine, "model": args.model,
        "systems": [s.label for s in systems], "options": base.to_dict(), "audio_only": mode == "none",
        "transcript_mode": mode, "data_split": args.split if scores_corpus else None,
        "git_commit": git_commit(),
        "machine": machine_info(), "timestamp": timestamp(),
        "thresholds": {"closure_cm": metrics.CLOSURE_THRESHOLD_CM, "ratio_eps_cm": metrics.RATIO_EPS_CM,
                       "blink": metrics.BLINK_THRESHOLD},
        "suites": {},
    }
    # the real references' motion statistics, shown next to each suite's (shipped with the package)
    try:
        targets = load_targets()
        result["motion_targets"] = {k: {f: t.get(f) for f in ("value", "low", "high", "value_tracker_smoothed", "statistic", "source")
                                        if f in t}
                                    for k, t in targets["targets"].items()}
    except (OSError, ValueError, ReferenceError) as exc:
        print(f"talkrig eval: no motion reference targets ({exc})", file=sys.stderr)
        result["motion_targets"] = {}
    interrupted = failed = clip_errors = False
    try:
        for suite, clips, total in plan:
            rows: list[dict[str, Any]] = []
            result["suites"][suite] = {"rows": rows, "means": {}}
            try:
                for clip in tqdm(clips(), desc=f"eval {suite}", unit="clip", file=sys.stderr, total=total):
                    new_rows = run_clip(clip, systems, base, diversity_seeds=args.diversity_seeds)
                    rows.extend(new_rows)
                    for note in clip.notes:
                        print(f"  {clip.name}: {note}", file=sys.stderr)
                    for r in new_rows:
                        if "error" in r:
                            clip_errors = True
                            print(f"  {clip.name} [{r['system']}] failed: {r['error']}", file=sys.stderr)
            except suites.SuiteError as exc:
                # Bad input in one suite (an unreadable file the user supplied) stops that suite only;
                # the other suites still run and the JSON records what stopped this one.
                failed = True
                result["suites"][suite]["error"] = str(exc)
                print(f"talkrig eval: {suite} suite stopped: {exc}", file=sys.stderr)
            result["suites"][suite]["means"] = means(rows) if rows else {}
            result["suites"][suite]["motion_stats"] = motion_stat_medians(rows) if rows else {}
    except KeyboardInterrupt:
        interrupted = True
        for s in result["suites"].values():
            s["means"] = means(s["rows"]) if s["rows"] else {}
            s["motion_stats"] = motion_stat_medians(s["rows"]) if s["rows"] else {}
        result["interrupted"] = True

    for suite, data in result["suites"].items():
        n = len({r["clip"] for r in data["rows"]})
        print(f"\n{suite} suite: {n} clip(s), engine {args.engine}")
        if args.per_clip and data["rows"]:
            print(report.per_clip(data["rows"]))
            print()
        if data["means"]:
            print(report.summary(data["means"]))
        if data.get("motion_stats"):
            if args.per_clip:
                print()
                print(report.motion_per_clip(data["rows"]))
            print("\nmotion against real people (real: motion_server/evaluation/references/motion_targets.json, "
                  "range = min-max over the real clips, 10th-90th percentile over blinks for blink shape; smoothed = "
                  "the HDTF speaker with the face tracker's frame-to-frame noise smoothed out; "
                  "definitions: motion_server/evaluation/motion_stats.py)")
            print(report.motion_summary(data["motion_stats"], result["motion_targets"]))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(args.json_out, (json.dumps(result, indent=1, default=_jsonable) + "\n").encode("utf-8"))
        print(f"\nwrote {args.json_out}")
    # 2: a suite stopped on bad input; 1: an engine failed on some clips (their rows hold the error).
    return 130 if interrupted else 2 if failed else 1 if clip_errors else 0


def _run_checks(args: argparse.Namespace) -> int:
    """The check suites: pass/fail against the issue's targets, JSON like the metric suites."""
    from motion_server.bench.machine import git_commit, machine_info, timestamp
    from motion_server.engine.base import GenerateOptions
    from motion_server.engine.registry import create_engine
    from motion_server.evaluation import suites

    if args.data is not None and not args.data.is_dir():
        return _fail(f"--data {args.data} is not a folder; build a corpus with `talkrig synth`")
    kwargs: dict[str, Any] = {k: v for k, v in (("model", args.model), ("device", args.device)) if v}
    try:
        engine = create_engine(args.engine, **kwargs)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        return _fail(f"cannot start engine {args.engine!r}: {exc}")
    base = GenerateOptions(seed=args.seed, steps=args.steps, sampler=args.sampler)
    print(f"talkrig eval: running the {args.suite} checks (a few minutes on a CPU)", file=sys.stderr)
    try:
        if args.suite == "style":
            from motion_server.evaluation.style_checks import run_style_suite

            checks = run_style_suite(engine, args.shared_dir, args.data, base)
        elif args.suite == "recognition":
            from motion_server.evaluation.recognition_checks import run_recognition_suite
            from motion_server.pipeline import MotionPipeline, default_recogniser

            checks = run_recognition_suite(MotionPipeline(engine, default_recogniser(args.asr_model)),
                                           args.shared_dir, base, args.limit)
        else:
            from motion_server.evaluation.robustness import run_robustness_suite

            checks = run_robustness_suite(engine, args.shared_dir, base)
    except (suites.SuiteError, RuntimeError, ValueError, OSError) as exc:
        # a corpus folder without a manifest, unreadable audio, ...: say what, not a traceback
        return _fail(f"{args.suite} checks stopped: {exc}")
    except KeyboardInterrupt:
        print("talkrig eval: interrupted", file=sys.stderr)
        return 130
    for line in _check_lines(checks):
        print(line)
    result = {"format": "talkrig-eval", "version": 1, "engine": args.engine, "model": args.model,
              "options": base.to_dict(), "git_commit": git_commit(), "machine": machine_info(),
              "timestamp": timestamp(), "suites": {args.suite: {"checks": _finite_or_null(checks)}}}
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(args.json_out, (json.dumps(result, indent=1, default=_jsonable) + "\n").encode("utf-8"))
        print(f"\nwrote {args.json_out}")
    return 0


def _finite_or_null(o: Any) -> Any:
    """NaN (an accuracy over no clips, say) as JSON null: strict JSON readers reject NaN."""
    if isinstance(o, dict):
        return {k: _finite_or_null(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite_or_null(v) for v in o]
    if isinstance(o, float) and o != o:
        return None
    return o


def _check_lines(checks: dict[str, Any]) -> list[str]:
    """One line per check: name, headline number, target, PASS/MISS."""
    lines = []
    sweep = checks.get("guidance_sweep")
    if sweep:
        s = sweep["summary"]
        lines.append(f"guidance sweep ({s['presets']} presets): scale 0 = neutral {s['scale0_is_neutral']}, "
                     f"monotonic {s['monotonic']}/{s['presets']}, lip sync within 10 % "
                     f"{s['sync_within_10pct']}/{s['presets']} (gap ratio within 10 %: "
                     f"{s['ratio_within_10pct']}/{s['presets']})  {'PASS' if s['pass'] else 'MISS'}")
    for key, label in (("reference_recovery", "reference recovery"), ("style_prior", "style prior emotion"),
                       ("style_prior_val_voices", "style prior emotion, val voices"),
                       ("style_prior_acted", "style prior emotion, real acted speech")):
        c = checks.get(key)
        if c and c.get("cases", c.get("clips", 0)):
            n = f"{c['clips']} clips, 95 % {c['ci95'][0]:.2f}-{c['ci95'][1]:.2f}, " if c.get("ci95") else ""
            voices = "; ".join(f"{v} {r}/{k}" for v, (r, k) in c.get("per_voice", {}).items())
            lines.append(f"{label}: {c['accuracy']:.2f} ({n}target >= {c['target']:.2f}, chance {c['chance']:.2f})  "
                         f"{'PASS' if c['pass'] else 'MISS'}" + (f"\n  per voice: {voices}" if voices else ""))
        elif c:
            lines.append(f"{label}: no held-out clips in --data to score")
    noise = checks.get("noise")
    for mode in ("audio_only", "with_transcript"):
        if not noise or mode not in noise:
            continue
        n = noise[mode]
        worst = max((v for v in n["abs_diff_to_clean"].values() if v is not None), default=float("nan"))
        lines.append(f"noise ({mode.replace('_', ' ')}, {noise['bilabials']} bilabials): clean closure "
                     f"{n['closure'].get('dreamtalk__noisy_audio_narrative.wav')}, worst |noisy - clean| {worst:.2f} "
                     f"(target <= {noise['target']:.2f})  {'PASS' if n['pass'] else 'MISS'}")
    rec = checks.get("rows") if "non_english" in checks else None
    if rec is not None:
        ne = checks["non_english"]
        lines.append(f"recognition on {checks['clips']} clips: {checks['clips'] - len(checks['failed'])} finite and no "
                     f"worse than --no-transcribe; English transcript used on {len(ne['english_transcript_used'])} "
                     f"of {ne['clips']} non-English clips  {'PASS' if not checks['failed'] else 'MISS'}")
        for f in checks["failed"]:
            r = rec[f]
            lines.append(f"  {f}: finite {r['finite']}, no worse {r['no_worse']}, English forced {r['english_forced']}")
        nz = checks.get("noise")
        if nz:
            worst = max((v for v in nz["abs_diff_to_clean"].values() if v is not None), default=float("nan"))
            lines.append(f"noise, recognised ({nz['bilabials']} bilabials): clean closure {nz['closure'].get(nz['clips'][0])}, "
                         f"worst |noisy - clean| {worst:.2f} (target <= {nz['target']:.2f})  "
                         f"{'PASS' if nz['pass'] else 'MISS'}")
    allc = checks.get("all_clips")
    if allc:
        lines.append(f"every shared clip: {allc['clips'] - len(allc['failed'])}/{allc['clips']} finite and in range"
                     f"{'' if not allc['failed'] else ' (failed: ' + ', '.join(allc['failed']) + ')'}  "
                     f"{'PASS' if allc['pass'] else 'MISS'}")
    lines += [f"note: {n}" for n in checks.get("notes", [])]
    return lines


def _jsonable(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:
        pass
    return str(o)


def _split_size(corpus: Path, split: str) -> int | None:
    """Utterances in a corpus split (None when the corpus is unreadable: the suite then says why)."""
    from motion_server.synth.corpus import CorpusError, CorpusReader

    try:
        return len(CorpusReader(corpus, split))
    except (CorpusError, OSError, ValueError, KeyError, TypeError):
        return None


def _corpus_suite_name(corpus: Path) -> str:
    """'real-corpus' for a corpus of real recordings, else 'synthetic'."""
    import json

    try:
        kind = json.loads((corpus / "MANIFEST.json").read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError):
        kind = None
    return "real-corpus" if kind == "real" else "synthetic"
