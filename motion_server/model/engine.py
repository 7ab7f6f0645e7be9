"""``DiffusionEngine``: the Engine protocol over a trained TalkRig diffusion checkpoint.

Style sources: a preset name (bundled codes), ``"predicted"`` (style predictor from the audio), a
reference clip (``options.style_reference`` FaceMotion, or a path to a Live Link Face CSV / .npz /
Audio2Face JSON in ``options.style``), and ``style_mix`` interpolating two codes. Same seed + inputs
-> same output (all noise comes from one seeded ``torch.Generator``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion_server.dsp import resample
from motion_server.engine.base import CancelToken, GenerateOptions, ProgressFn
from motion_server.options import MAX_STEPS, MODEL_DEFAULTS
from motion_server.performer.calibration import soft_limit_head
from motion_server.phones import Phone
from motion_server.protocol import STYLE_REFERENCE_FPS
from rig_mapping import FaceMotion
from rig_mapping.formats import FORMATS

from . import DEFAULT_CHECKPOINT, MOTION_DIM
from .batching import WindowBatcher, WindowWork
from .checkpoint import load_checkpoint
from .closure_detector import closure_events
from .constraints import closure_constraint
from .device import CoreShare, resolve_device, torch_threads
from .features import make_features, n_motion_frames
from .forward_packer import ForwardPacker
from .guidance import branches, combine
from .long import TimelineSampling
from .phone_track import phone_track
from .postprocess import apply_controls, blinks_per_minute
from .samplers import SAMPLERS, make_sampler
from .smoothing import scale_groups, smooth_groups
from .style_predictor import prior_sampling

log = logging.getLogger(__name__)

# MAX_STEPS (the sampler's real limit) lives in the option table, which every layer reads
# windows per denoiser forward on a CPU: measured per-window cost is flat from ~5 to 40 windows and
# higher at 64 (caches); a GPU takes the checkpoint's window.max_batch
CPU_MAX_BATCH = 32
DEFAULT_BLINK_RATE = 17.0  # blinks per minute of a relaxed speaker, when the model lists no rates
# denoiser rows per CPU lane: a solo 10 s take's forwards (5 rows) stay on the engine thread, where
# splitting them costs more in hand-offs than it saves (measured: 0.102 s against 0.085 s of sampling)
LANE_ROWS = 8
ENCODER_PACK_ROWS = 32  # 10 s speech-encoder windows per packed forward (about 0.3 GB of activations)


class DiffusionEngine:
    name = "diffusion"

    def __init__(self, model: str | Path | None = None, device: str = "auto", threads: int | None = None,
                 pack_encoder: bool | None = None) -> None:
        """``threads``: torch CPU threads while generating. Default 1 (or $TALKRIG_THREADS): the model is
        small, and on a busy CPU extra OpenMP threads spin against other processes — measured on the
        shared 2-core box, 11 s of speech took 0.27 s with one thread and 8-12 s with two.
        ``pack_encoder``: speech-encoder windows of jobs prepared side by side share forwards
        (``forward_packer``); default on a GPU only, where a job's few windows leave most of a forward idle."""
        self.threads = int(threads or os.environ.get("TALKRIG_THREADS", 1))
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        # The big forwards (the denoiser's windows, the speech encoder's) share this many cores
        # (device.CoreShare): all of them for a lone job, one each for forwards running side by side.
        self.batch_threads = max(self.threads, int(os.environ.get("TALKRIG_BATCH_THREADS", os.cpu_count() or 1)))
        self.cores = CoreShare(self.batch_threads)
        self.path = Path(model) if model is not None else DEFAULT_CHECKPOINT
        if model is None and not (self.path / "model.safetensors").is_file():
            raise FileNotFoundError(f"the bundled default checkpoint is missing at {self.path}; "
                                    "reinstall TalkRig or pass model=<checkpoint folder>")
        self.device = resolve_device(device)
        self.model = load_checkpoint(self.path, self.device)
        self.cfg = self.model.cfg
        self.fps = float(self.cfg["fps"])
        pack = self.device.type != "cpu" if pack_encoder is None else bool(pack_encoder)
        self.encoder_packer = ForwardPacker(ENCODER_PACK_ROWS) if pack else None
        self.features = make_features(self.cfg["features"], self.fps, self.cfg.get("speech_encoder"),
                                      run=self.encoder_packer.run if pack else self.cores.run).to(self.device)
        # jobs the motion server prepares at once when packing: more than its default, so their encoder
        # windows have company in the packer (None: the server's own default)
        self.prep_threads = 8 if pack else None
        self.forward_calls = 0  # network evaluations of the denoiser (tests and benchmarks read it)

    @property
    def reads_phones(self) -> bool:
        """Whether a transcript changes the result (the pipeline only recognises speech for such engines)."""
        return self.model.phone_embed is not None

    # -- info ---------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        tr = self.cfg.get("training", {})
        return {
            "name": self.name, "device": str(self.device), "threads": self.threads, "model": str(self.path),
            "model_name": self.cfg.get("name"), "format": self.cfg.get("format"), "fps": self.fps,
            "style_presets": self.model.preset_names(),
            "styles": ["<preset>", "predicted", "<.csv/.npz/.json reference clip: a path in-process, style_reference data via a server>"],
            "samplers": sorted(SAMPLERS), "default_steps": self.cfg["sampling"]["steps"],
            "default_sampler": self.cfg["sampling"]["sampler"],
            "default_guidance": float(self.cfg["sampling"].get("guidance", 1.0)), "max_steps": MAX_STEPS,
            "options": ["style", "style_reference", "style_mix", "guidance", "intensity", "head_motion",
                        "blink_rate", "seed", "steps", "sampler", "fps", "transcript", "transcribe"],
            "reads_phones": self.model.phone_embed is not None,
            "speech_encoder": ({k: self.cfg["speech_encoder"][k] for k in ("kind", "weights", "sha256")}
                               if self.cfg.get("speech_encoder") else None),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "training_data": tr.get("data", {}), "training_data_by_stage": tr.get("data_by_stage", {}),
            "training_metrics": tr.get("metrics", {}),
        }

    # -- style --------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_reference(self, motion: FaceMotion) -> torch.Tensor:
        if motion.n_frames < 2:
            raise ValueError("a style reference clip needs at least 2 frames")
        lo, hi = STYLE_REFERENCE_FPS
        if not lo <= motion.fps <= hi:
            raise ValueError(f"a style reference clip must be {lo:g}-{hi:g} fps, got {motion.fps:g}")
        n_out = self.model.style_encoder.max_frames
        # cut to the frames the encoder reads before resampling: the cost then never depends on the
        # clip's length (or on a tiny fps that would make a short clip hours long)
        motion = motion[: math.ceil(n_out * motion.fps / self.fps) + 2]
        m = motion if abs(motion.fps - self.fps) < 1e-6 else motion.resample(self.fps)
        x = np.concatenate([m.weights, m.head], axis=1)[:n_out]
        xn = self.model.normalize(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return self.model.encode_style(xn[None])[0]

    @torch.no_grad()
    def predicted_style(self, audio: np.ndarray, sr: int, seed: int = 0) -> torch.Tensor:
        """The style predictor's code for a clip (what ``style="predicted"`` uses)."""
        a = self._check(audio, sr, self.with_model_defaults(GenerateOptions()))
        T = n_motion_frames(len(a), self.features.sr, self.fps)
        feats = torch.from_numpy(self.features(a, n_frames=T)).to(self.device)[None]
        emb = self.model.encode_audio(feats)
        return self._resolve("predicted", emb, self.features.clip_stats(a), seed)[0]

    def _resolve(self, style: str | None, audio_emb: torch.Tensor, stats: np.ndarray,
                 seed: int) -> tuple[torch.Tensor, str]:
        names = self.model.preset_names()
        if style is None:
            default = self.cfg["sampling"].get("default_style", "neutral")
            style = default if default in names else names[0]
        if style in names:
            return self.model.preset(style), style
        if style == "predicted":
            sp = self.model.style_predictor
            gen = torch.Generator().manual_seed(int(seed) + 7919)
            toks = sp.pool_audio(audio_emb)
            st = torch.from_numpy(stats).to(self.device)[None]
            return sp.sample(toks, st, self.model.schedule, self.cfg["style_predictor"]["steps"], gen,
                             **prior_sampling(self.cfg))[0], style
        p = Path(style)
        # only a name with a motion-file suffix is a path (in-process callers); the server refuses such
        # names before they get here, so a peer never makes this engine open or probe a file
        if p.suffix.lower() in FORMATS:
            if not p.is_file():
                raise FileNotFoundError(f"style reference file not found: {p}")
            from rig_mapping.formats import load_motion

            return self.encode_reference(load_motion(p)), str(p)
        raise ValueError(f"unknown style {style!r}: use a preset ({', '.join(names)}), 'predicted', or a path "
                         "to a reference clip (.csv Live Link Face, .npz, .json)")

    def style_code(self, options: GenerateOptions, audio_emb: torch.Tensor, stats: np.ndarray) -> tuple[torch.Tensor, str]:
        if options.style_reference is not None:
            code, label = self.encode_reference(options.style_reference), "reference"
        else:
            code, label = self._resolve(options.style, audio_emb, stats, options.seed)
        if options.style_mix is not None:
            other, t = options.style_mix
            t = float(t)
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"style_mix weight must be in [0, 1], got {t}")
            code2, label2 = self._resolve(other, audio_emb, stats, options.seed + 1)
            code = (1 - t) * code + t * code2
            label = f"{label}*{1 - t:.2f}+{label2}*{t:.2f}"
        return code, label

    def _anchored_on_neutral(self) -> bool:
        which = self.cfg["sampling"].get("guidance_anchor", "neutral")
        if which not in ("neutral", "null"):
            raise ValueError(f"sampling.guidance_anchor must be 'neutral' or 'null', got {which!r} (checkpoint config)")
        return which == "neutral" and "neutral" in self.model.preset_names()

    def guidance_anchor(self) -> torch.Tensor:
        """The style code guidance scale 0 gives ([1, S]): the neutral preset, or the null token."""
        return self.model.preset("neutral")[None] if self._anchored_on_neutral() else self.model.null_style[None]

    def _aligned_phones(self, audio: np.ndarray, o: GenerateOptions,
                        cancel: CancelToken | None) -> tuple[list | None, str]:
        """With a transcript and a model that reads phones: forced-align it (pocketsphinx) and return the
        phones. Without either: (None, "none"); audio alone drives the lips. A transcript that cannot
        be aligned (other words, another language) is logged and the audio alone is used, as the
        procedural engine does; the motion's meta says which happened."""
        text = (o.transcript or "").strip()
        if not text and o.phones is None:
            return None, "none"
        if self.model.phone_embed is None:
            return None, "ignored (this model does not read phones)"
        if o.phones is not None:  # aligned by the pipeline (a recognised transcript, unsure words marked)
            if not o.phones:  # or aligned ahead by `talkrig animate`, which could not align it
                return None, "none (alignment failed)"
            return list(o.phones), "aligned"
        from motion_server.align import AlignError, align_transcript

        try:
            phones = align_transcript(audio, self.features.sr, text,
                                      cancel.check if cancel is not None else None)
        except AlignError as exc:
            log.warning("transcript not aligned (%s); generating from the audio alone", exc)
            return None, "none (alignment failed)"
        return phones, "aligned"

    def _detected_closures(self, feats: torch.Tensor) -> list[Phone] | None:
        """Audio only: the lip closures the model's closure detector hears, as bilabial events; None
        when the model has no detector or no fitted threshold (``sampling.closure_threshold``)."""
        threshold = self.cfg["sampling"].get("closure_threshold")
        prob = self.model.closure_probability(feats)
        if prob is None or threshold is None:
            return None
        return closure_events(prob[0].cpu().numpy(), self.fps, float(threshold))

    def _blink_prior(self, weights: np.ndarray, o: GenerateOptions, style_label: str) -> float | None:
        """Blinks are not predictable from audio, and a few-step sampler tends to average them away.
        When the sampled motion blinks far less (or more) often than the style does — the reference
        clip's own rate, or the preset's rate in the training data — place blinks at that rate. Guidance
        scales the rate like the rest of the style: from the neutral rate at 0 to the style's at 1."""
        rates = self.cfg.get("preset_blink_rates", {})
        fallback = float(np.mean(list(rates.values()))) if rates else DEFAULT_BLINK_RATE
        style = o.style if o.style is not None else self.cfg["sampling"].get("default_style", "neutral")
        if o.style_reference is not None:
            target = blinks_per_minute(o.style_reference.weights, o.style_reference.fps)
        else:
            target = rates.get(style, fallback)
        if self._anchored_on_neutral() and "neutral" in rates:
            target = float(np.clip(rates["neutral"] + o.guidance * (target - rates["neutral"]), 0.0, 120.0))
        have = blinks_per_minute(weights, self.fps)
        return None if 0.5 * target <= have <= 1.5 * target else target

    # -- generate -----------------------------------------------------------------------------------
    def _check(self, audio: np.ndarray, sr: int, o: GenerateOptions) -> np.ndarray:
        a = np.asarray(audio, dtype=np.float32)
        if a.ndim != 1:
            raise ValueError(f"audio must be mono 1-D samples, got shape {list(a.shape)} (mix channels down)")
        if a.size == 0:
            raise ValueError("audio is empty")
        if not np.isfinite(a).all():
            raise ValueError("audio contains NaN or infinite samples")
        if o.sampler not in SAMPLERS:  # the table lists the samplers too; this guards a drift
            raise ValueError(f"unknown sampler {o.sampler!r}; choose one of {sorted(SAMPLERS)}")
        if int(sr) != self.features.sr:
            a = resample(a, int(sr), self.features.sr)
        return a

    def generate(self, audio: np.ndarray, sr: int, options: GenerateOptions | None = None,
                 progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> FaceMotion:
        with self.compute_threads():
            task = self.begin(audio, sr, options, progress, cancel)
            self.batcher().run_alone(task.sampling)
            return task.finish()

    def close(self) -> None:
        """Stop the CPU lane and packer threads (an engine still works after, on the calling thread alone)."""
        self.cores.close()
        if self.encoder_packer is not None:
            self.encoder_packer.close()

    @contextlib.contextmanager
    def compute_threads(self) -> Iterator[None]:
        """Torch's CPU threads of the calling thread set to ``self.threads`` while inside, for the small
        per-job work (the server's engine thread holds it while serving); the big forwards take their
        cores from ``self.cores``."""
        if self.device.type != "cpu":
            yield
            return
        with torch_threads(self.threads):
            yield

    @property
    def max_batch(self) -> int:
        """Windows per denoiser forward unless told otherwise: the checkpoint's ``window.max_batch``, at
        most CPU_MAX_BATCH on a CPU."""
        n = int(self.cfg["window"]["max_batch"])
        return min(n, CPU_MAX_BATCH) if self.device.type == "cpu" else n

    def batcher(self, max_batch: int | None = None) -> WindowBatcher:
        """A batcher running this engine's denoiser: ``generate`` samples one job in it; the motion server
        keeps one for all its jobs (``begin`` gives each job's run)."""
        return WindowBatcher(self.forward_windows, max_batch or self.max_batch)

    @torch.inference_mode()
    def forward_windows(self, work: list[WindowWork]) -> list[torch.Tensor]:
        """One denoiser forward for windows of any runs begun by this engine: each window once per
        guidance branch of its job, with its job's style code and step; guided x0 windows per item."""
        xs, conds, ts, styles, sizes = [], [], [], [], []
        for w in work:
            task: DiffusionTask = w.run.context
            n = w.x.shape[0]
            for code in task.codes:
                xs.append(w.x)
                conds.append(w.cond)
                ts.append(torch.full((n,), w.t, dtype=torch.long, device=self.device))
                styles.append(code.expand(n, -1))
            sizes.append(n * len(task.codes))
        self.forward_calls += 1
        out = self.cores.run(self.model.denoise, torch.cat(xs), torch.cat(conds), torch.cat(ts), torch.cat(styles),
                             lane_rows=LANE_ROWS)
        return [combine(list(part.split(w.x.shape[0])), w.run.context.scale)
                for w, part in zip(work, out.split(sizes), strict=True)]

    def with_model_defaults(self, o: GenerateOptions) -> GenerateOptions:
        """Options with what the user left unset (None) taken from the checkpoint's ``sampling``
        settings: a checkpoint trained or tuned for other steps/sampler/guidance gets them by default."""
        sampling = self.cfg["sampling"]
        fill = {k: sampling[k] for k in MODEL_DEFAULTS if getattr(o, k) is None and k in sampling}
        if "guidance" in fill:
            fill["guidance"] = float(fill["guidance"])
        if "guidance" not in sampling and o.guidance is None:  # older checkpoints name no guidance
            fill["guidance"] = 1.0
        return replace(o, **fill) if fill else o

    def _with_level(self, o: GenerateOptions) -> GenerateOptions:
        """``preset:level`` (the grammar every engine reads): the preset, with the level scaling guidance."""
        from motion_server.engine.styles import LEVEL_SCALE, split_level

        if not o.style or o.style_reference is not None:
            return o
        name, level = split_level(o.style)
        if level is None or name not in self.model.preset_names():
            return o
        return replace(o, style=name, guidance=o.guidance * LEVEL_SCALE[level])

    @torch.inference_mode()
    def begin(self, audio: np.ndarray, sr: int, options: GenerateOptions | None = None,
              progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> DiffusionTask:
        """Everything before sampling (options, features, audio encoding, style, phones, seeded noise):
        a task whose ``sampling`` run a batcher steps to the end, then ``finish()`` gives the motion."""
        asked = options or GenerateOptions()
        resolved = self.with_model_defaults(asked)
        # the option table's limits (steps 1..MAX_STEPS, blink_rate, guidance, ...) on what the caller
        # asked for, before a style level scales guidance
        resolved.check()
        o = self._with_level(resolved)
        t0 = time.perf_counter()
        a = self._check(audio, sr, o)
        report = progress or (lambda f, s: None)
        check = cancel.check if cancel is not None else (lambda: None)
        report(0.0, "features")
        T = n_motion_frames(len(a), self.features.sr, self.fps)
        rows, stats = self.features.rows_and_stats(a, n_frames=T)
        feats = torch.from_numpy(rows).to(self.device)[None]
        m = self.model
        audio_emb = m.encode_audio(feats)  # once per clip, not per step
        check()
        style, style_label = self.style_code(o, audio_emb, stats)
        codes = branches(style[None], self.guidance_anchor(), float(o.guidance))
        sampler = make_sampler(o.sampler, m.schedule, int(o.steps), seed=int(o.seed))
        gen = torch.Generator().manual_seed(int(o.seed))  # the job's own noise, whoever it is batched with
        x_T = torch.randn((1, T, MOTION_DIM), generator=gen).to(self.device)
        aligned, phones_source = self._aligned_phones(a, o, cancel)
        track = None
        constraint = None
        enforce = bool(self.cfg["sampling"].get("enforce_closures", False))
        closures: list[Phone] | None = aligned
        if aligned is not None:
            track = torch.from_numpy(phone_track(aligned, T, self.fps, self.model.phone_symbols))[None].to(self.device)
        elif enforce:  # audio only: the closures the detector hears (None without one)
            closures = self._detected_closures(feats)
        if closures is not None and enforce:
            constraint = closure_constraint(closures, T, self.fps, m.normalize, m.denormalize)
        cond = m.with_phones(audio_emb, track)
        task = DiffusionTask(self, asked, o, codes, style_label, phones_source, report, t0)
        task.closures_detected = None if aligned is not None or closures is None else len(closures)
        wcfg = self.cfg["window"]
        task.sampling = TimelineSampling(sampler, x_T, cond, wcfg["frames"], wcfg["overlap"], constraint, check,
                                         lambda f: report(0.05 + 0.9 * f, "sampling"), context=task)
        return task

    @torch.inference_mode()
    def _finish(self, task: DiffusionTask) -> FaceMotion:
        o, style_label, asked = task.options, task.style_label, task.asked
        requested = asked.style
        x0 = task.sampling.result()
        starts = task.sampling.timeline.starts
        m = self.model
        out = m.denormalize(x0[0]).cpu().numpy()
        weights = np.clip(out[:, :52], 0.0, 1.0)
        head = out[:, 52:].copy()
        head[:, :3] = np.clip(head[:, :3], -1.0, 1.0)
        post = self.cfg.get("postprocess", {})
        weights, head = smooth_groups(weights, head, self.fps, post.get("smooth_s", {}))
        weights, head = scale_groups(weights, head, post.get("variance_gain", {}))
        head[:, :3] = np.radians(soft_limit_head(np.degrees(head[:, :3])))  # the performer's limit
        blink_rate = o.blink_rate if o.blink_rate is not None else self._blink_prior(weights, o, style_label)
        weights, head = apply_controls(weights, head, self.fps, o.intensity, o.head_motion, blink_rate, o.seed)
        if requested and requested != o.style and style_label == o.style:
            style_label = requested  # "happy:3", as asked
        meta = {"engine": self.name, "model": self.cfg.get("name"), "seed": int(o.seed), "style": style_label,
                "sampler": o.sampler, "steps": int(o.steps), "guidance": float(o.guidance),
                "sample_rate": self.features.sr, "seconds": round(time.perf_counter() - task.t0, 3),
                "window_boundaries": starts[1:], "phones": task.phones_source,
                # which of steps/sampler/guidance the checkpoint chose because the caller left them unset
                "model_defaults": [k for k in MODEL_DEFAULTS if getattr(asked, k) is None]}
        if task.closures_detected is not None:  # audio only: how many closures the detector shut
            meta["closures_detected"] = task.closures_detected
        motion = FaceMotion.from_arrays(weights, head, fps=self.fps, meta=meta)
        if abs(float(o.fps) - self.fps) > 1e-6:
            motion = motion.resample(float(o.fps))
        task.report(1.0, "done")
        return motion


class DiffusionTask:
    """One generation begun by ``DiffusionEngine.begin``: its sampling run and what finishing needs."""

    def __init__(self, engine: DiffusionEngine, asked: GenerateOptions, options: GenerateOptions,
                 codes: list[torch.Tensor], style_label: str, phones_source: str, report: ProgressFn,
                 t0: float) -> None:
        self.engine = engine
        self.asked = asked  # as the caller gave them (the meta names what the checkpoint chose)
        self.options = options  # resolved
        self.codes = codes  # style codes per guidance branch ([1, S] each)
        self.scale = float(options.guidance)
        self.style_label = style_label
        self.phones_source = phones_source
        self.report = report
        self.t0 = t0
        self.closures_detected: int | None = None
        self.sampling: TimelineSampling

    def finish(self) -> FaceMotion:
        """The motion, once ``sampling`` is done (post-processing: smoothing, controls, blinks)."""
        return self.engine._finish(self)
