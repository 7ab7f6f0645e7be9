"""`talkrig animate` end to end: plan outputs, generate every motion in this process (tqdm over inputs),
write motion files directly, hand scene exports and renders to one Blender child process, then print a
summary. An input that fails is reported with its reason; the others still complete."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from motion_server.engine.base import GenerateOptions
from motion_server.pipeline import transcript_summary
from rig_mapping.atomic import prepare_output, scratch_dir
from rig_mapping.formats import save_motion

from .blender_bridge import BlenderJob, run_blender_jobs
from .generate import Generator, animate_file, make_generator, resolve_engine_name
from .plan import DEMO_CHARACTER, MOTION_SUFFIXES, Item, PlanError, check_character, expand_inputs, plan


@dataclass
class Settings:
    inputs: list[str]
    out: str | None = None
    render: str | None = None
    character: str | None = None
    resolution: tuple[int, int] = (480, 480)
    samples: int | None = None
    render_engine: str = "workbench"
    engine: str | None = None
    model: str | None = None
    server: str | None = None
    overwrite: bool = False
    options: GenerateOptions = field(default_factory=GenerateOptions)
    transcript_files: bool = True  # read <stem>.txt beside an audio file as its transcript
    asr_model: str | None = None  # speech recogniser for takes without a transcript (None: the default)
    style_file: str | None = None  # the --style reference clip this run reads (never written)
    target: str | None = None  # object name of the character in --character (None: found by its shape keys)
    profile: str | None = None  # mapping profile: preset name or .toml/.json file (None: automatic)


@dataclass
class Outcome:
    item: Item
    frames: int = 0
    duration: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    render_fps: float | None = None
    done: bool = False  # every output of this input is written


def animate(s: Settings, log: Callable[..., None] = print) -> int:
    """Returns 0 when every input succeeded, 1 when some failed, 2 for unusable arguments."""
    try:
        inputs, notes = expand_inputs(s.inputs)
        check_character(s.character)
        profile_file = _check_profile(s.profile)
        items = plan(inputs, s.out, s.render, s.overwrite, read_files=(_character_file(s.character), s.style_file, profile_file))
        if any(it.render is not None for it in items) and shutil.which("ffmpeg") is None:
            raise PlanError("--render needs ffmpeg to write the video (sudo apt-get install ffmpeg); "
                            "leave out --render to write only the animation")
        _prepare_outputs(items)
    except PlanError as exc:
        log(f"talkrig animate: {exc}", file=sys.stderr)
        return 2
    for n in notes:
        log(n)
    unused = [f for f, v in (("--character", s.character), ("--target", s.target), ("--profile", s.profile)) if v]
    if unused and not any(it.needs_blender for it in items):
        log(f"note: {', '.join(unused)} only matter for .glb/.gltf/.fbx/.blend output or --render; "
            f"{', '.join(MOTION_SUFFIXES)} files hold the motion alone")

    engine_name, notice = resolve_engine_name(s.engine, s.model)
    if notice and not s.server:
        log(notice)
    outcomes = [Outcome(item=it, error=it.error) for it in items]
    todo = [o for o in outcomes if o.error is None]
    t_start = time.perf_counter()
    interrupted = False
    try:
        with scratch_dir("animate") as tmp:
            jobs: list[tuple[Outcome, BlenderJob]] = []
            if todo:
                try:
                    gen = make_generator(engine_name, s.model, s.server, s.asr_model)
                except Exception as exc:  # noqa: BLE001 - bad checkpoint, missing extra, unreachable server...
                    hint = ("; pass --model CHECKPOINT_FOLDER, or --engine procedural (no model needed)"
                            if engine_name == "diffusion" and not s.server else "")
                    log(f"talkrig animate: cannot start engine {engine_name!r}: {_reason(exc)}{hint}",
                        file=sys.stderr)
                    return 2
                try:
                    _generate_all(todo, gen, s, tmp, jobs)
                finally:
                    gen.close()
            if jobs:
                _blender_all(jobs)
    except KeyboardInterrupt:
        # Ctrl-C: what finished is on disk, complete (every write is atomic); say so, and what did not
        interrupted = True
        for o in todo:
            if o.error is None and not o.done:
                o.error = "interrupted (Ctrl-C) before this input finished"
    _summary(outcomes, time.perf_counter() - t_start, log)
    if interrupted:
        log("talkrig animate: interrupted", file=sys.stderr)
        return 130
    return 0 if all(o.error is None for o in outcomes) else 1


def _check_profile(profile: str | None) -> str | None:
    """Refuse an unknown preset or a broken profile file before any work; the file path (never
    written), or None."""
    if profile is None:
        return None
    from rig_mapping.profile import ProfileError, load_profile

    try:
        load_profile(profile)
    except (ProfileError, OSError, ValueError) as exc:
        raise PlanError(f"--profile {profile}: {exc}") from None
    return profile if Path(profile).is_file() else None


@contextmanager
def _ctrl_c_after() -> Iterator[None]:
    """Hold a Ctrl-C that arrives while a finished file is renamed into place and recorded, and raise it
    right after, so an input is never reported interrupted once its file is complete (main thread only:
    elsewhere Python delivers no signals anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def _prepare_outputs(items: list[Item]) -> None:
    """Before any generation: sweep leftovers of killed runs from every output folder and refuse a
    folder that cannot be written (one line naming it), instead of failing after minutes of work."""
    seen: set[Path] = set()
    for it in items:
        if it.error:
            continue
        for p in (it.out, it.render):
            if p is None or p.absolute().parent in seen:
                continue
            seen.add(p.absolute().parent)
            try:
                prepare_output(p)
            except OSError as exc:
                raise PlanError(str(exc)) from None


def _generate_all(todo: list[Outcome], gen: Generator, s: Settings, tmp: Path,
                  jobs: list[tuple[Outcome, BlenderJob]]) -> None:
    bar = tqdm(todo, desc=f"motion ({gen.label})", unit="file", dynamic_ncols=True)
    for o in bar:
        it = o.item
        bar.set_postfix_str(it.audio.name[:40])

        def progress(frac: float, stage: str, _bar=bar, _name=it.audio.name[:30]) -> None:
            _bar.set_postfix_str(f"{_name} {stage} {100 * frac:.0f}%", refresh=True)

        try:
            motion, duration, notes = animate_file(gen, it.audio, s.options, progress,
                                                   sidecar=s.transcript_files)
        except Exception as exc:  # noqa: BLE001 - any failure of one input is reported, the batch goes on
            o.error = _reason(exc)
            continue
        o.frames, o.duration = motion.n_frames, duration
        it.notes.extend(notes)
        heard = transcript_summary(motion)
        if heard:
            it.notes.append(heard)
        try:
            with _ctrl_c_after():  # the summary must agree with what is on disk
                if it.out is not None and it.out.suffix.lower() in MOTION_SUFFIXES:
                    it.out.parent.mkdir(parents=True, exist_ok=True)
                    o.outputs.append(str(save_motion(motion, it.out, overwrite=s.overwrite)))
                if not it.needs_blender:
                    o.done = True
            if it.needs_blender:
                tmp_motion = tmp / f"{len(jobs):04d}_{it.stem}.npz"
                save_motion(motion, tmp_motion, overwrite=True)
                blend_out = it.out if it.out is not None and it.out.suffix.lower() not in MOTION_SUFFIXES else None
                for p in (blend_out, it.render):
                    if p is not None:
                        p.parent.mkdir(parents=True, exist_ok=True)
                jobs.append((o, BlenderJob(
                    motion=str(tmp_motion), audio=str(it.audio.resolve()), name=it.stem,
                    out=str(blend_out.resolve()) if blend_out else None,
                    render=str(it.render.resolve()) if it.render else None,
                    character=_abs_character(s.character), target=s.target,
                    profile=str(Path(s.profile).resolve()) if s.profile and Path(s.profile).is_file() else s.profile,
                    resolution=s.resolution, samples=s.samples, render_engine=s.render_engine,
                    overwrite=s.overwrite,
                )))
        except Exception as exc:  # noqa: BLE001
            o.error = _reason(exc)
    bar.close()


def _character_file(character: str | None) -> str | None:
    return None if character == DEMO_CHARACTER else character


def _abs_character(character: str | None) -> str:
    # the Blender child runs in another folder's terms: hand it absolute paths
    file = _character_file(character)
    return str(Path(file).resolve()) if file else DEMO_CHARACTER


def _blender_all(jobs: list[tuple[Outcome, BlenderJob]]) -> None:
    bar = tqdm(total=len(jobs), desc="blender", unit="file", dynamic_ncols=True)

    def on_event(ev: dict[str, Any]) -> None:
        i = ev.get("job", 0)
        name = jobs[i][1].name[:30] if isinstance(i, int) and 0 <= i < len(jobs) else "?"
        kind = ev.get("type")
        if kind == "stage":
            bar.set_postfix_str(f"{name} {ev.get('stage')}", refresh=True)
        elif kind == "frames":
            bar.set_postfix_str(f"{name} render {ev.get('done')}/{ev.get('total')} frames", refresh=True)
        elif kind in ("done", "error"):
            bar.update(1)
            if kind == "done" and isinstance(i, int) and 0 <= i < len(jobs):
                jobs[i][0].done = True  # so a Ctrl-C later still reports this one as finished
                _record_outputs(jobs[i][0], ev.get("outputs", []))

    try:
        results = run_blender_jobs([j for _, j in jobs], on_event)
    finally:
        bar.close()
    for (o, _job), r in zip(jobs, results, strict=True):
        if r.ok:
            if r.render_frames and r.render_seconds > 0:
                o.render_fps = r.render_frames / r.render_seconds
        else:
            o.error = r.error


def _record_outputs(o: Outcome, outputs: list[str]) -> None:
    # the child reports absolute paths; show them as the user wrote them, like the motion files
    given = {str(p.resolve()): str(p) for p in (o.item.out, o.item.render) if p is not None}
    o.outputs.extend(given.get(out, out) for out in outputs if given.get(out, out) not in o.outputs)


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip()
    if isinstance(exc, (ValueError, OSError, RuntimeError)) and msg:
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _summary(outcomes: list[Outcome], seconds: float, log: Callable[..., None]) -> None:
    rows = []
    for o in outcomes:
        if o.error:
            detail = o.error
        else:
            detail = ", ".join(o.outputs)
            if o.render_fps:
                detail += f"  (rendered {o.render_fps:.1f} frames/s)"
            if o.item.notes:
                detail += "  [" + "; ".join(o.item.notes) + "]"
        rows.append((str(o.item.audio), "ok" if not o.error else "FAILED",
                     f"{o.duration:.2f}s/{o.frames}f" if o.frames else "-", detail))
    w0 = max(len("input"), *(len(r[0]) for r in rows))
    w2 = max(len("audio"), *(len(r[2]) for r in rows))
    log("")
    log(f"{'input':<{w0}}  {'result':<6}  {'audio':<{w2}}  outputs / reason")
    for r in rows:
        log(f"{r[0]:<{w0}}  {r[1]:<6}  {r[2]:<{w2}}  {r[3]}")
    n_bad = sum(1 for o in outcomes if o.error)
    log(f"{len(outcomes) - n_bad} of {len(outcomes)} input(s) done in {seconds:.1f} s"
        + (f"; {n_bad} failed" if n_bad else ""))
