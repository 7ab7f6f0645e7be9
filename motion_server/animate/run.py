"""`talkrig animate` end to end: plan outputs, skip inputs whose outputs are up to date (the ledger),
generate motions on the chosen workers (this process, ``--jobs N`` local processes or ``--ray``), write
motion files here, send scene exports and renders to Blender children in groups, then print a summary
(and a JSON report with ``--report``). An input that fails is retried when its worker died, else
reported with its reason; the others still complete."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from motion_server import __version__
from motion_server.engine.base import GenerateOptions
from motion_server.pipeline import sidecar_transcript, transcript_summary
from rig_mapping import FaceMotion
from rig_mapping.atomic import prepare_output, sweep_scratch, write_bytes_atomic
from rig_mapping.formats import save_motion

from .blender_bridge import BlenderJob
from .generate import bundled_checkpoint, load_style_reference, resolve_engine_name
from .ledger import Ledger, file_digest, folder_digest, settings_key
from .plan import (
    DEMO_CHARACTER,
    MOTION_SUFFIXES,
    Item,
    PlanError,
    check_character,
    expand_lines,
    outputs_of,
    plan,
)
from .prealign import AheadAligner, aligns_ahead
from .workers import (
    Backend,
    BlenderDone,
    BlenderTask,
    EngineSpec,
    MotionDone,
    MotionTask,
    make_backend,
    reason,
)


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
    jobs: int = 1  # local workers (1: this process)
    ray: str | None = None  # a Ray cluster address, or 'auto'
    retries: int = 2  # more tries for an input whose worker died
    force: bool = False  # make outputs again even when the ledger says they are up to date
    report: str | None = None  # JSON report of every input
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
    skipped: bool = False  # already up to date: nothing was made
    attempts: int = 0
    worker: str = ""
    seconds: float = 0.0  # spent on this input by its workers
    aligned_ahead_s: float | None = None  # spent aligning its script here while the workers started
    options: GenerateOptions | None = None  # the command line's with this input's manifest settings on top
    key: str | None = None  # its ledger key: what makes its outputs


def animate(s: Settings, log: Callable[..., None] = print) -> int:
    """Returns 0 when every input succeeded (or was already up to date), 1 when some failed, 2 for
    unusable arguments, 130 after Ctrl-C."""
    try:
        lines, notes = expand_lines(s.inputs)
        check_character(s.character)
        for ln in lines:
            if ln.character is not None:
                check_character(str(ln.character))
        profile_file = _check_profile(s.profile)
        items = plan(lines, s.out, s.render, s.overwrite,
                     read_files=(_character_file(s.character), s.style_file, profile_file))
        if any(it.render is not None for it in items) and shutil.which("ffmpeg") is None:
            raise PlanError("--render needs ffmpeg to write the video (sudo apt-get install ffmpeg); "
                            "leave out --render to write only the animation")
        if s.jobs < 1:
            raise PlanError(f"--jobs {s.jobs}: give 1 or more workers")
        if s.retries < 0:
            raise PlanError(f"--retries {s.retries}: give 0 or more")
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
    spec = EngineSpec(engine_name, s.model, s.server, s.asr_model)
    outcomes = [Outcome(item=it, error=it.error) for it in items]
    t_start = time.perf_counter()
    ledger = Ledger()
    try:
        for o in outcomes:  # once per input: a manifest line's style clip is read here, not again per task
            if o.error is None or o.item.existing:
                o.options = _options_for(o.item, s)
                o.key = _key(o.item, o.options, s, spec)
    except (ValueError, OSError) as exc:
        log(f"talkrig animate: {exc}", file=sys.stderr)
        return 2
    for o in outcomes:
        if o.key and o.item.existing and not s.force and ledger.up_to_date(outputs_of(o.item), o.key):
            o.error, o.skipped, o.done = None, True, True
            o.outputs = [str(p) for p in outputs_of(o.item)]
    todo = [o for o in outcomes if o.error is None and not o.skipped]
    if len(todo) < len(outcomes) and any(o.skipped for o in outcomes):
        log(f"{sum(o.skipped for o in outcomes)} input(s) already up to date (same audio and settings); "
            "pass --force to make them again")
    interrupted = False
    backend: Backend | None = None
    try:
        if todo:
            try:
                backend = make_backend(s.jobs, s.ray)
                for n in getattr(backend, "notes", []):
                    log(f"note: {n}")
                if backend.workers == 1 and not s.ray:
                    _check_engine(spec)  # fail fast, once, with the fix (a pool reports per input)
            except Exception as exc:  # noqa: BLE001 - bad checkpoint, missing extra, unreachable server...
                hint = ("; pass --model CHECKPOINT_FOLDER, or --engine procedural (no model needed)"
                        if engine_name == "diffusion" and not s.server and not s.ray else "")
                log(f"talkrig animate: cannot start engine {engine_name!r}: {reason(exc)}{hint}", file=sys.stderr)
                if backend is not None:
                    backend.close(cancel=True)
                return 2
            _Scheduler(backend, spec, s, todo, ledger).run()
    except KeyboardInterrupt:
        # Ctrl-C: what finished is on disk, complete (every write is atomic); say so, and what did not
        interrupted = True
        for o in todo:
            if o.error is None and not o.done:
                o.error = "interrupted (Ctrl-C) before this input finished"
    finally:
        if backend is not None:
            backend.close(cancel=interrupted)
    seconds = time.perf_counter() - t_start
    _summary(outcomes, seconds, log)
    if s.report:
        _write_report(Path(s.report), outcomes, seconds, backend.label if backend else "none", log)
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


def _character_file(character: str | Path | None) -> str | None:
    return None if character is None or str(character) == DEMO_CHARACTER else str(character)


def _abs_character(character: str | Path | None) -> str:
    # the Blender child runs in another folder's terms: hand it absolute paths
    file = _character_file(character)
    return str(Path(file).resolve()) if file else DEMO_CHARACTER


def _check_engine(spec: EngineSpec) -> None:
    from .workers import _generator

    _generator(spec)


def _key(item: Item, options: GenerateOptions, s: Settings, spec: EngineSpec) -> str:
    """What makes this input's outputs: when it is unchanged, so are they."""
    character = _character_file(item.character or s.character)
    parts: dict[str, Any] = {
        "talkrig": __version__,
        "audio": file_digest(item.audio) if item.audio.is_file() else str(item.audio),
        "options": _keyed_options(options),
        "style_reference": _motion_digest(options.style_reference),
        "engine": [spec.engine, spec.server, spec.asr_model],
        "model": _model_digest(spec),
        "outputs": [p.suffix.lower() for p in outputs_of(item)],
    }
    if s.transcript_files and not (options.transcript or "").strip():
        side = sidecar_transcript(item.audio)
        parts["sidecar"] = file_digest(side) if side else None
    if item.needs_blender:
        parts["blender"] = {"character": file_digest(character) if character else "demo head",
                            "resolution": list(s.resolution), "samples": s.samples, "render": s.render_engine}
    return settings_key(parts)


def _keyed_options(options: GenerateOptions) -> dict[str, Any]:
    """The options in a ledger key. An unset ``language`` is left out: outputs made before the option
    existed stay up to date (it changes nothing when unset)."""
    d = options.to_dict()
    if d.get("language") is None:
        d.pop("language", None)
    return d


def _motion_digest(m: FaceMotion | None) -> str | None:
    if m is None:
        return None
    return hashlib.sha256(m.weights.tobytes() + m.head.tobytes() + str(m.fps).encode()).hexdigest()


_MODEL_DIGESTS: dict[str | None, str | None] = {}


def _model_digest(spec: EngineSpec) -> str | None:
    if spec.engine != "diffusion" or spec.server:
        return None
    if spec.model not in _MODEL_DIGESTS:
        folder = Path(spec.model) if spec.model else bundled_checkpoint()
        _MODEL_DIGESTS[spec.model] = folder_digest(folder) if folder and folder.is_dir() else None
    return _MODEL_DIGESTS[spec.model]


def _options_for(item: Item, s: Settings) -> GenerateOptions:
    """The command line's options with this input's own manifest settings on top."""
    o = s.options
    if item.transcript is not None:
        o = replace(o, transcript=item.transcript)
    if item.language is not None:
        o = replace(o, language=item.language)
    if item.style is not None:
        o = load_style_reference(replace(o, style=item.style, style_reference=None))
    return o

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
    sweep_scratch()  # and a killed run's scratch folders (rendered frames...) from the temp folder
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


BLENDER_GROUP = 8  # inputs per Blender child: its start-up is paid once per group, memory stays bounded


class _Scheduler:
    """One loop for every backend: keep a bounded number of tasks in flight, write motion files here,
    send scene work to Blender in groups as motions arrive, retry what a dead worker lost (bounded), and
    record every finished input in its folder's ledger."""

    def __init__(self, backend: Backend, spec: EngineSpec, s: Settings, todo: list[Outcome], ledger: Ledger) -> None:
        self.backend, self.spec, self.s, self.ledger = backend, spec, s, ledger
        self.todo = todo
        self.queue: deque[tuple[int, int]] = deque((i, 1) for i in range(len(todo)))  # (outcome, attempt)
        self.blender_queue: list[tuple[int, int, FaceMotion]] = []  # (outcome, attempt, motion)
        self.in_flight: dict[Future[Any], tuple[str, Any]] = {}
        self.window = max(2, 2 * backend.workers)  # tasks in flight: enough to keep workers busy, no more
        # workers in other processes: until the first result says they are up, a thread here aligns lines'
        # scripts (prealign.py)
        self.align_ahead = (backend.workers > 1 or bool(s.ray)) and aligns_ahead(spec.engine, spec.model,
                                                                                 spec.server)
        self.ahead: AheadAligner | None = None
        self.aligned: dict[int, GenerateOptions] = {}  # the options with the phones a line's worker gets
        n_blender = sum(1 for o in todo if o.item.needs_blender)
        self.bar = tqdm(total=len(todo) + n_blender, desc=f"animate ({backend.label})", unit="step",
                        dynamic_ncols=True)
        if hasattr(backend, "progress"):  # the in-process worker reports each file's stages
            backend.progress = self._progress

    def _progress(self, frac: float, stage: str) -> None:
        self.bar.set_postfix_str(f"{stage} {100 * frac:.0f}%", refresh=True)

    def run(self) -> None:
        if self.align_ahead:
            self.ahead = AheadAligner([(i, o.item.audio, o.options) for i, o in enumerate(self.todo)
                                       if o.options is not None], self.s.transcript_files)
        try:
            while self.queue or self.blender_queue or self.in_flight:
                while self.queue and len(self.in_flight) < self.window:
                    self._submit_motion(*self.queue.popleft())
                flush = not self.queue and not any(kind == "motion" for kind, _ in self.in_flight.values())
                if self.blender_queue and (len(self.blender_queue) >= BLENDER_GROUP or flush):
                    self._submit_blender()
                if not self.in_flight:
                    continue
                done, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
                for fut in done:
                    kind, what = self.in_flight.pop(fut)
                    if kind == "motion":
                        self._motion_done(fut, *what)
                    else:
                        self._blender_done(fut, what)
        finally:
            if self.ahead is not None:
                self.ahead.stop()
            self.bar.close()

    # -- motion ------------------------------------------------------------------------------------
    def _submit_motion(self, i: int, attempt: int) -> None:
        o = self.todo[i]
        o.attempts = attempt
        assert o.options is not None  # resolved for every input to do, before scheduling
        if i not in self.aligned and self.ahead is not None:
            aligned = self.ahead.take(i)
            if aligned is not None:
                self.aligned[i], o.aligned_ahead_s = aligned.options, aligned.seconds
                if aligned.note:  # the script came from <stem>.txt: said here, the worker gets the text
                    o.item.notes.append(aligned.note)
        options = self.aligned.get(i, o.options)
        # absolute: a worker (another process, another node) has its own working folder
        task = MotionTask(i, str(o.item.audio.absolute()), options, self.s.transcript_files and i not in self.aligned)
        self.in_flight[self.backend.submit_motion(self.spec, task)] = ("motion", (i, attempt))

    def _motion_done(self, fut: Future[Any], i: int, attempt: int) -> None:
        o = self.todo[i]
        if self.ahead is not None:  # the workers are up: they align the rest themselves
            self.ahead.stop(wait=False)
        try:
            r: MotionDone = fut.result()
        except Exception as exc:  # noqa: BLE001 - the worker died (killed, out of memory): not the input's fault
            r = MotionDone(index=i, error=f"worker lost: {reason(exc)}", retry=True)
            self.backend.restart()
        o.worker, o.seconds = r.worker, o.seconds + r.seconds
        if r.error is not None:
            if r.retry and attempt <= self.s.retries:
                self.queue.append((i, attempt + 1))
                return
            o.error = r.error + (f" (after {attempt} attempts)" if attempt > 1 else "")
            self.bar.update(1 + o.item.needs_blender)
            return
        assert r.motion is not None
        it = o.item
        o.frames, o.duration = r.motion.n_frames, r.duration
        it.notes.extend(r.notes)
        heard = transcript_summary(r.motion)
        if heard:
            it.notes.append(heard)
        self.bar.update(1)
        self.bar.set_postfix_str(it.audio.name[:40])
        try:
            with _ctrl_c_after():  # the summary must agree with what is on disk
                if it.out is not None and it.out.suffix.lower() in MOTION_SUFFIXES:
                    it.out.parent.mkdir(parents=True, exist_ok=True)
                    o.outputs.append(str(save_motion(r.motion, it.out, overwrite=self.s.overwrite or it.existing)))
                if not it.needs_blender:
                    self._finished(o)
        except Exception as exc:  # noqa: BLE001
            o.error = reason(exc)
            return
        if it.needs_blender:
            self.blender_queue.append((i, 1, r.motion))

    # -- Blender -----------------------------------------------------------------------------------
    def _submit_blender(self) -> None:
        group, self.blender_queue = self.blender_queue[:BLENDER_GROUP], self.blender_queue[BLENDER_GROUP:]
        jobs = [(i, self._blender_job(self.todo[i]), motion) for i, _, motion in group]
        fut = self.backend.submit_blender(BlenderTask(jobs))
        self.in_flight[fut] = ("blender", group)

    def _blender_job(self, o: Outcome) -> BlenderJob:
        it, s = o.item, self.s
        blend_out = it.out if it.out is not None and it.out.suffix.lower() not in MOTION_SUFFIXES else None
        for p in (blend_out, it.render):
            if p is not None:
                p.parent.mkdir(parents=True, exist_ok=True)
        return BlenderJob(
            motion="", audio=str(it.audio.resolve()), name=it.stem,
            out=str(blend_out.resolve()) if blend_out else None,
            render=str(it.render.resolve()) if it.render else None,
            character=_abs_character(it.character or s.character), target=s.target,
            profile=str(Path(s.profile).resolve()) if s.profile and Path(s.profile).is_file() else s.profile,
            resolution=s.resolution, samples=s.samples, render_engine=s.render_engine,
            overwrite=s.overwrite or it.existing,
        )

    def _blender_done(self, fut: Future[Any], group: list[tuple[int, int, FaceMotion]]) -> None:
        try:
            done: BlenderDone = fut.result()
            results = dict(done.results)
            worker, seconds = done.worker, done.seconds / max(1, len(group))
        except Exception as exc:  # noqa: BLE001 - the task's worker died: every input of the group is lost
            results, worker, seconds = {}, "", 0.0
            lost = f"worker lost: {reason(exc)}"
        else:
            lost = "the Blender job gave no result for this input"
        for i, attempt, motion in group:
            o = self.todo[i]
            r = results.get(i)
            o.seconds += seconds
            o.worker = f"{o.worker}, {worker}" if worker and worker != o.worker else o.worker
            if r is not None and r.ok:
                _record_outputs(o, r.outputs)
                if r.render_frames and r.render_seconds > 0:
                    o.render_fps = r.render_frames / r.render_seconds
                self._finished(o)
                self.bar.update(1)
                continue
            error = r.error if r is not None and r.error else lost if r is None else "the Blender job failed"
            crashed = r is None or r.crashed
            if crashed and attempt <= self.s.retries:
                o.attempts += 1
                self.blender_queue.append((i, attempt + 1, motion))
                continue
            o.error = error
            self.bar.update(1)

    # -- bookkeeping -------------------------------------------------------------------------------
    def _finished(self, o: Outcome) -> None:
        o.done = True
        if o.key:
            try:
                self.ledger.record(outputs_of(o.item), o.key, {"audio": str(o.item.audio)})
            except OSError as exc:  # the outputs are complete; only the skip-next-time record is lost
                o.item.notes.append(f"could not record it in the ledger: {exc}")

def _record_outputs(o: Outcome, outputs: list[str]) -> None:
    # the child reports absolute paths; show them as the user wrote them, like the motion files
    given = {str(p.resolve()): str(p) for p in (o.item.out, o.item.render) if p is not None}
    o.outputs.extend(given.get(out, out) for out in outputs if given.get(out, out) not in o.outputs)


def _summary(outcomes: list[Outcome], seconds: float, log: Callable[..., None]) -> None:
    rows = []
    for o in outcomes:
        if o.error:
            detail = o.error
        elif o.skipped:
            detail = "up to date: " + ", ".join(o.outputs)
        else:
            detail = ", ".join(o.outputs)
            if o.render_fps:
                detail += f"  (rendered {o.render_fps:.1f} frames/s)"
            if o.item.notes:
                detail += "  [" + "; ".join(o.item.notes) + "]"
        rows.append((str(o.item.audio), "FAILED" if o.error else "skip" if o.skipped else "ok",
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


def _write_report(path: Path, outcomes: list[Outcome], seconds: float, backend: str,
                  log: Callable[..., None]) -> None:
    """Every input with its result, outputs, time, worker and attempts, as JSON (written atomically)."""
    rows = [{
        "audio": str(o.item.audio),
        "result": "failed" if o.error else "skipped" if o.skipped else "ok",
        "outputs": o.outputs,
        "error": o.error,
        "frames": o.frames,
        "duration_s": round(o.duration, 3),
        "seconds": round(o.seconds, 3),
        "worker": o.worker,
        "attempts": o.attempts,
        "aligned_ahead_s": None if o.aligned_ahead_s is None else round(o.aligned_ahead_s, 3),
        "notes": o.item.notes,
    } for o in outcomes]
    report = {"version": 1, "talkrig": __version__, "backend": backend, "seconds": round(seconds, 3),
              "counts": {k: sum(r["result"] == k for r in rows) for k in ("ok", "skipped", "failed")},
              "inputs": rows}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, (json.dumps(report, indent=1) + "\n").encode())
    except OSError as exc:
        log(f"talkrig animate: could not write the report {path}: {exc}", file=sys.stderr)
        return
    log(f"report: {path}")
