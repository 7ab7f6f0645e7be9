"""``talkrig bench``: speed and memory of engines (and plug-in benchmarks: server, blender)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from motion_server.engine.registry import ENGINE_NAMES
from rig_mapping.atomic import write_bytes_atomic


def _floats(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds like 10,60,600, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"durations must be positive seconds, got {text!r}")
    return vals


def _settings(text: str) -> list[dict[str, Any]]:
    """'dpm:8,ddim:20' -> [{'sampler': 'dpm', 'steps': 8}, ...]; a bare number means steps only."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        sampler, _, steps = item.rpartition(":")
        if not sampler and not steps.isdigit():
            sampler, steps = steps, ""
        if steps and not steps.isdigit():
            raise argparse.ArgumentTypeError(f"steps must be a whole number in {item!r} (form sampler:steps)")
        out.append({**({"sampler": sampler} if sampler else {}), **({"steps": int(steps)} if steps else {})})
    return out or [{}]


def _counts(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers like 1,8,32, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"counts must be 1 or more, got {text!r}")
    return vals


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure generation speed (real-time factor), latency and memory",
        description="Benchmark engines on tiled real speech of several lengths. Plug-in benchmarks "
        "(modules in motion_server/bench/) measure the server round trip and Blender keying/export.",
    )
    p.add_argument("--engine", default="procedural,energy",
                   help=f"comma list of engines ({', '.join(ENGINE_NAMES)})")
    p.add_argument("--model", help="checkpoint for the diffusion engine")
    p.add_argument("--durations", type=_floats, default=[10.0, 60.0, 600.0], help="seconds of audio, e.g. 10,60,600")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--settings", type=_settings, default=[{}],
                   help="sampler settings for engines that take them: 'dpm:8,ddim:20' (sampler:steps)")
    p.add_argument("--what", default="engine", help="comma list of benchmarks: engine, server, server-batch (concurrent diffusion jobs vs one after "
                   "another), animate-batch (talkrig animate over short lines: --jobs 1/2, --ray), blender")
    p.add_argument("--clients", type=_counts, default=[8],
                   help="server-batch: concurrent clients, a comma list gives one row each (e.g. 1,8,32)")
    p.add_argument("--clips", type=int, default=40, help="animate-batch: how many short lines")
    p.add_argument("--library", choices=("scripted", "unscripted", "both"), default="both",
                   help="animate-batch: lines with their scripts (aligned), without (recognised by Whisper: "
                        "~15 min on 2 cores), or both")
    p.add_argument("--json", type=Path, dest="json_out", help="write results here")
    p.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                   help="replace an existing --json file")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"talkrig bench: {msg}", file=sys.stderr)
    return 2


def _rss(r: dict[str, Any]) -> float | None:
    """Peak RSS of whichever process did the work (this one, the server, the bpy child)."""
    for key in ("peak_rss_mib", "server_peak_rss_mib"):
        if r.get(key) is not None:
            return float(r[key])
    return None


def _table(results: list[dict[str, Any]]) -> str:
    head = ["what", "engine", "setting", "audio s", "RTF median", "RTF min-max", "first call s", "peak RSS MiB",
            "GPU MiB", "overhead ms"]
    rows = []
    for r in results:
        setting = r.get("setting", "")
        setting = ",".join(f"{k}={v}" for k, v in setting.items()) if isinstance(setting, dict) else str(setting)
        for key, unit in (("speedup", "x"), ("throughput_ratio", "x"), ("time_ratio", "x the time")):
            if r.get(key) is not None:  # comparison rows: the number is the point
                setting += f": {r[key]:.2f}{unit}" + (f" (goal {r['goal']})" if r.get("goal") else "")
        rtf = r.get("rtf_median")
        rows.append([
            str(r.get("what", "")), str(r.get("engine", r.get("name", ""))), setting, f"{r.get('duration_s', 0):g}",
            "-" if rtf is None else f"{rtf:.1f}",
            "-" if rtf is None else f"{r.get('rtf_min', rtf):.1f}-{r.get('rtf_max', rtf):.1f}",  # one run: no spread
            "-" if r.get("first_call_s") is None else f"{r['first_call_s']:.3f}",
            "-" if _rss(r) is None else f"{_rss(r):.0f}",
            "-" if r.get("gpu_peak_mib") is None else f"{r['gpu_peak_mib']:.0f}",
            # server rows: what the ZeroMQ round trip adds to the engine's own time
            "-" if r.get("overhead_median_ms") is None else f"{r['overhead_median_ms']:.1f}",
        ])
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True)) for line in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from motion_server import bench
    from motion_server.bench.context import BenchContext
    from motion_server.bench.machine import git_commit, machine_info, timestamp
    from motion_server.model.device import resolve_device

    if args.repeats < 1 or args.warmup < 0:
        return _fail("--repeats must be >= 1 and --warmup >= 0")
    if args.clips < 1:
        return _fail("--clips must be 1 or more")
    if args.json_out and args.json_out.exists() and not args.overwrite:
        return _fail(f"{args.json_out} exists; pass --overwrite to replace it or choose another --json path")
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINE_NAMES]
    if bad:
        return _fail(f"unknown engine(s) {bad}; choose from {', '.join(ENGINE_NAMES)}")
    try:
        resolve_device(args.device)  # refuse --device cuda on a machine without one before any work
    except RuntimeError as exc:
        return _fail(str(exc))
    try:
        modules = {w.strip(): bench.load(w.strip()) for w in args.what.split(",") if w.strip()}
    except bench.BenchmarkNotFound as exc:
        return _fail(str(exc))

    ctx = BenchContext(engines=engines, durations=args.durations, device=args.device, repeats=args.repeats,
                       warmup=args.warmup, settings=args.settings, model=args.model,
                       progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True),
                       extra={"clients": args.clients, "clips": args.clips, "library": args.library})
    out: dict[str, Any] = {
        "format": "talkrig-bench", "version": 1, "git_commit": git_commit(), "timestamp": timestamp(),
        "machine": machine_info(), "device": ctx.resolved_device(),
        "args": {"engines": engines, "durations": args.durations, "repeats": args.repeats, "warmup": args.warmup,
                 "settings": args.settings, "what": list(modules), "model": args.model,
                 "clients": args.clients, "clips": args.clips},
        "results": [], "errors": {},
    }
    rc = 0
    try:
        for name, mod in modules.items():
            try:
                out["results"].extend(mod.run(ctx))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one failing benchmark is reported; the others still run
                out["errors"][name] = f"{type(exc).__name__}: {exc}"
                print(f"talkrig bench: {name} failed: {exc}", file=sys.stderr)
                rc = 1
    except KeyboardInterrupt:
        out["interrupted"] = True
        rc = 130
    for r in out["results"]:
        if r.get("error"):  # a configuration that could not run (e.g. an engine whose server did not start)
            print(f"talkrig bench: {r.get('what')} {r.get('engine', '')}: {r['error']}", file=sys.stderr)
            rc = rc or 1
    print(_table(out["results"]))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(args.json_out, (json.dumps(out, indent=1, default=str) + "\n").encode("utf-8"))
        print(f"wrote {args.json_out}")
    return rc
