"""Training: lip expert -> denoiser (with the frozen lip expert as a loss) -> style predictor.

Seeded and resumable: the output folder always holds a loadable checkpoint (``model.safetensors`` +
``config.json``) plus ``train_state.{json,safetensors}`` (stage, step, optimizer; no pickle).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rig_mapping.arkit import ARKIT_INDEX, MOUTH_CHANNELS

from .checkpoint import grow_checkpoint, load_checkpoint, load_train_state, save_checkpoint, save_train_state
from .closure_detector import bilabial_frames, event_scores
from .config import load_config
from .data import (
    Batches,
    Clip,
    DataError,
    build_clips,
    cached_clips,
    capture_utterances,
    corpus_utterances,
    summarize,
)
from .device import resolve_device
from .lip_expert import shifted_pairs
from .network import TalkRigModel
from .phone_track import DEFAULT_SYMBOLS, jitter_and_drop
from .speech_encoder import pin as pin_speech_encoder
from .style_encoder import pad_clips
from .style_predictor import prior_sampling

STAGES = ("lip_expert", "denoiser", "style_predictor", "closure_detector")
# a stage runs only on models that have its part
OPTIONAL_STAGES = {"closure_detector": "closure_detector"}
DEFAULT_STEPS = {"closure_detector": 600}  # it overfits a few hours of speech within a few hundred steps
# The closure detector's operating point: the lowest threshold that shuts at most this share of the
# validation open-vowel frames. 3 % left real voices short of closures. 4 % reproduces, on the bundled
# detector's curve, the threshold that scoring the validation splits end to end chose (talkrig eval
# --split val, TRAINING.md session 11); a retrained detector's pick is worth the same check.
CLOSURE_FALSE_OPEN_MAX = 0.04
MOUTH_IDX = [ARKIT_INDEX[n] for n in MOUTH_CHANNELS]
Log = Callable[[str], None]


def _lr(step: int, total: int, base: float, warmup: int, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5 %. With a time budget the decay follows whichever of
    steps or wall time is further along, so a budget-limited run still ends at a low learning rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = max((step - warmup) / max(1, total - warmup), time_frac)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


class Trainer:
    def __init__(self, out: Path, cfg: dict[str, Any], train: list[Clip], val: list[Clip],
                 device: torch.device, log: Log = print, model: TalkRigModel | None = None,
                 data_summary: dict[str, Any] | None = None) -> None:
        self.out, self.cfg, self.train, self.val, self.device, self.log = out, cfg, train, val, device, log
        self.tc = cfg["train"]
        seed = int(self.tc["seed"])
        torch.manual_seed(seed)
        emotions = sorted({c.emotion for c in train if c.emotion})
        if model is None:
            cfg["emotions"] = emotions
            cfg["presets"] = emotions or ["neutral"]
            model = TalkRigModel(cfg)
            allm = np.concatenate([c.motion for c in train])
            model.set_motion_stats(torch.from_numpy(allm.mean(0)), torch.from_numpy(allm.std(0)))
        self.model = model.to(device)
        self.emotions = list(model.cfg.get("emotions", []))
        self.batches = Batches(train, self.emotions, seed)
        self.val_batches = Batches(val or train, self.emotions, seed + 1)
        self.summary = data_summary or {}
        self.lip_gap = _lip_gap_fn(device) if float(self.tc.get("gap_loss_weight", 0.0)) > 0 else None
        self.phone_rng = np.random.default_rng(seed + 17)
        if self.model.phone_symbols and tuple(self.model.phone_symbols) != DEFAULT_SYMBOLS:
            raise ValueError("phones.symbols must be the ARPAbet list the training data is indexed with "
                             f"({len(DEFAULT_SYMBOLS)} symbols, motion_server.model.phone_track.DEFAULT_SYMBOLS)")
        self.metrics: dict[str, Any] = {}
        self.done: list[str] = []
        self.refit_stats = False  # run_training sets it when a fine-tune renormalised the motion
        # which data each stage was trained on (a fine-tune may train one stage on other data)
        self.data_by_stage: dict[str, Any] = {}
        # settings changed by hand after an earlier training (scripts/checkpoint_variant.py), kept with
        # the checkpoint until a stage refits them
        self.changed_after_training: list[dict[str, Any]] = []

    # -- helpers ---------------------------------------------------------------------------------
    def _save(self, stage: str, step: int, opt: torch.optim.Optimizer | None) -> None:
        training = {"data": self.summary, "metrics": self.metrics, "stages_done": self.done,
                    "data_by_stage": self.data_by_stage}
        if self.changed_after_training:
            training["changed_after_training"] = self.changed_after_training
        save_checkpoint(self.model, self.out, {"training": training})
        if opt is not None:
            save_train_state(self.out, opt.state_dict(), {"stage": stage, "step": step, "done": self.done,
                                                          "metrics": self.metrics,
                                                          "freeze": frozen_prefixes(self.tc)})

    def _style(self, idx: torch.Tensor, batches: Batches, drop: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        refs = batches.references(idx, self.model.style_encoder.max_frames)
        ref_n = [self.model.normalize(r.to(self.device)) for r in refs]
        x, pad = pad_clips(ref_n, self.model.style_encoder.max_frames)
        s = self.model.encode_style(x, pad)
        if drop > 0:
            m = (torch.rand(len(s), device=self.device) < drop)[:, None]
            s = torch.where(m, self.model.null_style.expand_as(s), s)
        return s, ref_n

    def _run(self, stage: str, steps: int, params: list[Any], step_fn: Callable[[int], dict[str, float]],
             eval_fn: Callable[[], dict[str, float]], start: int, opt_state: dict | None,
             time_budget: float | None) -> None:
        opt = torch.optim.AdamW(params, lr=self.tc["lr"], weight_decay=self.tc["weight_decay"])
        if opt_state is not None:
            try:
                opt.load_state_dict(opt_state)
            except ValueError as exc:
                raise ValueError(f"the saved optimizer state of stage {stage!r} does not fit this model ({exc}); "
                                 "it was saved by another version: delete train_state.json and "
                                 "train_state.safetensors in the output folder to restart the stage") from None
        t0 = time.time()
        run_avg: dict[str, float] = {}
        bar = tqdm(range(start, steps), desc=stage, initial=start, total=steps, unit="step")
        step = start
        for step in bar:
            torch.manual_seed(int(self.tc["seed"]) * 100003 + step)
            lr = _lr(step, steps, self.tc["lr"], self.tc["warmup"],
                     (time.time() - t0) / time_budget if time_budget else 0.0)
            for g in opt.param_groups:
                g["lr"] = lr * float(g.get("lr_mult", 1.0))
            self.model.train()
            losses = step_fn(step)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
            opt.step()
            for k, v in losses.items():
                fv = float(v.detach()) if torch.is_tensor(v) else float(v)
                run_avg[k] = 0.95 * run_avg.get(k, fv) + 0.05 * fv
            bar.set_postfix({k: f"{v:.4f}" for k, v in run_avg.items()})
            last = step + 1 == steps
            if (step + 1) % self.tc["log_every"] == 0 or last:
                self.log(f"[{stage}] step {step + 1}/{steps} " + " ".join(f"{k}={v:.4f}" for k, v in run_avg.items()))
            over = time_budget is not None and time.time() - t0 > time_budget
            if (step + 1) % self.tc["eval_every"] == 0 or last or over:
                ev = eval_fn()
                self.metrics[stage] = {"step": step + 1, **ev}
                self.log(f"[{stage}] eval step {step + 1}: " + json.dumps(ev))
            if (step + 1) % self.tc["save_every"] == 0 or last or over:
                self._save(stage, step + 1, opt)
            if over:
                self.log(f"[{stage}] time budget reached at step {step + 1}")
                break
        bar.close()
        self.metrics.setdefault(stage, {})["steps_run"] = step + 1
        self.done.append(stage)
        self._save(stage, step + 1, None)
        for f in ("train_state.json", "train_state.safetensors"):
            (self.out / f).unlink(missing_ok=True)

    # -- stage 1: lip expert ---------------------------------------------------------------------------
    def lip_batch(self, batches: Batches, batch: int, gen: torch.Generator):
        le = self.cfg["lip_expert"]
        need = le["frames"] + 2 * le["max_shift"]
        b = batches.windows(batch, need, min_frames=need)
        motion = self.model.normalize(b["motion"].to(self.device))
        fa, mo, lab = shifted_pairs(b["feats"].to(self.device), motion, le["frames"], le["min_shift"],
                                    le["max_shift"], gen)
        refs = batches.references(b["idx"], self.model.style_encoder.max_frames)
        x, pad = pad_clips([self.model.normalize(r.to(self.device)) for r in refs], 10**6)
        return fa, mo, lab.to(self.device), x, pad

    def train_lip_expert(self, steps: int, start: int = 0, opt_state: dict | None = None,
                         time_budget: float | None = None) -> None:
        le_model = self.model.lip_expert
        gen = torch.Generator().manual_seed(int(self.tc["seed"]))

        def step_fn(step: int) -> dict[str, float]:
            fa, mo, lab, x, pad = self.lip_batch(self.batches, self.tc["batch"] * 2, gen)
            logit = le_model.logits(fa, mo, le_model.style(x, pad))
            loss = F.binary_cross_entropy_with_logits(logit, lab)
            acc = ((logit > 0).float() == lab).float().mean()
            return {"loss": loss, "acc": acc.detach()}

        self._run("lip_expert", steps, list(le_model.parameters()), step_fn, self.eval_lip_expert, start,
                  opt_state, time_budget)

    @torch.no_grad()
    def eval_lip_expert(self, n: int = 256) -> dict[str, float]:
        self.model.eval()
        le_model = self.model.lip_expert
        gen = torch.Generator().manual_seed(1234)
        vb = Batches(self.val or self.train, self.emotions, 4321)
        fa, mo, lab, x, pad = self.lip_batch(vb, n, gen)
        logit = le_model.logits(fa, mo, le_model.style(x, pad))
        return {"val_accuracy": round(float(((logit > 0).float() == lab).float().mean()), 4),
                "val_pairs": n}

    # -- stage 2: denoiser ---------------------------------------------------------------------------
    def style_codes_move(self) -> bool:
        """Whether this run changes what a style code means: the denoiser stage trains the style encoder
        (``train.freeze`` does not name it), or the motion it reads was renormalised (``refit_motion_stats``)."""
        return "style_encoder" not in frozen_prefixes(self.tc) or self.refit_stats

    def denoiser_params(self) -> list[dict[str, Any]]:
        """The denoiser stage's parameter groups, less those ``train.freeze`` names (parameter-name
        prefixes, e.g. ``["style_encoder", "null_style"]``: a fine-tune that keeps the style codes, and
        so the emotion presets, in the space they were fitted in)."""
        frozen = frozen_prefixes(self.tc)
        named = denoiser_stage_parameters(self.model)
        check_freeze_names(frozen, [n for n, _ in named])
        main: list[torch.nn.Parameter] = []
        table: list[torch.nn.Parameter] = []
        for n, p in named:
            if any(_under(n, f) for f in frozen):
                p.requires_grad_(False)
            else:
                (table if n.startswith("phone_embed.") else main).append(p)
        if not main:
            raise ValueError(f"train.freeze {frozen} leaves nothing of the denoiser stage to train; freeze "
                             "fewer modules")
        groups: list[dict[str, Any]] = [{"params": main}]
        if table:
            # the phone table starts at zero and only its rows for phones in the batch get gradient:
            # a larger step lets it reach the audio embedding's scale within a short fine-tune
            groups.append({"params": table, "lr_mult": float(self.tc.get("phone_lr_mult", 10.0))})
        if frozen:
            self.log(f"[denoiser] frozen: {', '.join(frozen)}")
        return groups

    def _phones(self, b: dict[str, torch.Tensor], corrupt: bool) -> torch.Tensor | None:
        if self.model.phone_embed is None or "phones" not in b:
            return None
        track = b["phones"].numpy()
        if corrupt:
            track = jitter_and_drop(track, self.phone_rng, float(self.tc.get("phone_drop", 0.4)),
                                    int(self.tc.get("phone_jitter", 0)))
        return torch.from_numpy(track).to(self.device)

    def denoise_losses(self, b: dict[str, torch.Tensor], batches: Batches, drop: float,
                       corrupt_phones: bool = True) -> dict[str, torch.Tensor]:
        m, tc, dev = self.model, self.tc, self.device
        feats = b["feats"].to(dev)
        x0 = m.normalize(b["motion"].to(dev))
        style, ref_n = self._style(b["idx"], batches, drop)
        audio = m.with_phones(m.encode_audio(feats), self._phones(b, corrupt_phones))
        B = x0.shape[0]
        t = torch.randint(0, m.schedule.train_steps, (B,), device=dev)
        x_t = m.schedule.add_noise(x0, torch.randn_like(x0), t)
        pred = m.denoise(x_t, audio, t, style)
        w = torch.ones(x0.shape[-1], device=dev)
        w[MOUTH_IDX] = tc["mouth_weight"]
        rec = ((pred - x0) ** 2 * w).mean()
        vel = ((torch.diff(pred, dim=1) - torch.diff(x0, dim=1)) ** 2 * w).mean()
        out = {"rec": rec, "vel": vel}
        loss = rec + tc["velocity_loss_weight"] * vel
        gw = float(tc.get("gap_loss_weight", 0.0))
        if gw > 0 and self.lip_gap is not None:
            # L1 on the midline lip gap (cm) of the ICT face, weighted up where the lips are shut: L1
            # picks a mode (closed or open) where L2 would average them into a half-open mouth
            gp = self.lip_gap(m.denormalize(pred)[..., :52])
            gt = self.lip_gap(b["motion"].to(dev)[..., :52])
            wgt = 1.0 + 4.0 * (gt < 0.15).float()
            out["gap"] = (wgt * (gp - gt).abs()).mean()
            loss = loss + gw * out["gap"]
        lw = tc["lip_loss_weight"]
        le = m.lip_expert
        Wl = le.frames
        if lw > 0 and x0.shape[1] >= Wl:
            s = int(torch.randint(0, x0.shape[1] - Wl + 1, (1,)))
            x, pad = pad_clips(ref_n, 10**6)
            ls = le.sync_loss(feats[:, s: s + Wl], pred[:, s: s + Wl], le.style(x, pad))
            out["sync"] = ls
            loss = loss + lw * ls
        out["loss"] = loss
        return out

    def train_denoiser(self, steps: int, start: int = 0, opt_state: dict | None = None,
                       time_budget: float | None = None) -> None:
        for p in self.model.lip_expert.parameters():
            p.requires_grad_(False)
        frames = self.cfg["window"]["frames"]
        drop = float(self.cfg["diffusion"]["null_prob"])

        def step_fn(step: int) -> dict[str, torch.Tensor]:
            self.model.lip_expert.eval()
            return self.denoise_losses(self.batches.windows(self.tc["batch"], frames), self.batches, drop)

        self._run("denoiser", steps, self.denoiser_params(), step_fn, self.eval_denoiser, start, opt_state,
                  time_budget)

    @torch.no_grad()
    def eval_denoiser(self, n: int = 8) -> dict[str, float]:
        """Quick val numbers: held-out x0 loss at fixed noise levels, and a real 4-step sample of val
        windows compared with the ground truth (lip-gap correlation on the ICT face, mouth MAE)."""
        from .samplers import make_sampler

        m = self.model
        m.eval()
        vb = Batches(self.val or self.train, self.emotions, 777)
        b = vb.windows(n, self.cfg["window"]["frames"])
        torch.manual_seed(0)
        losses = self.denoise_losses(b, vb, 0.0, corrupt_phones=False)
        feats = b["feats"].to(self.device)
        style, _ = self._style(b["idx"], vb, 0.0)
        audio = m.with_phones(m.encode_audio(feats), self._phones(b, False))
        gen = torch.Generator().manual_seed(0)
        x_T = torch.randn(b["motion"].shape, generator=gen).to(self.device)
        x0 = make_sampler("dpm", m.schedule, 4).sample(
            lambda x, t: m.denoise(x, audio, torch.full((n,), t, device=self.device), style), x_T)
        out_w = m.denormalize(x0)[..., :52].clamp(0, 1).cpu().numpy()
        gt_w = b["motion"][..., :52].numpy()
        audio_only_w = None
        if m.phone_embed is not None:  # the default path (no transcript) must not regress unseen
            plain = m.encode_audio(feats)
            xa = make_sampler("dpm", m.schedule, 4).sample(
                lambda x, t: m.denoise(x, plain, torch.full((n,), t, device=self.device), style), x_T)
            audio_only_w = m.denormalize(xa)[..., :52].clamp(0, 1).cpu().numpy()
        res = {"val_rec": round(float(losses["rec"]), 4),
               "val_mouth_mae": round(float(np.abs(out_w[..., MOUTH_IDX] - gt_w[..., MOUTH_IDX]).mean()), 4)}
        try:
            from motion_server.evaluation.geometry import lip_gap

            cors = [np.corrcoef(lip_gap(o), lip_gap(g))[0, 1] for o, g in zip(out_w, gt_w, strict=True)]
            res["val_lip_gap_corr"] = round(float(np.nanmean(cors)), 4)
            if audio_only_w is not None:
                cors = [np.corrcoef(lip_gap(o), lip_gap(g))[0, 1] for o, g in zip(audio_only_w, gt_w, strict=True)]
                res["val_lip_gap_corr_audio_only"] = round(float(np.nanmean(cors)), 4)
        except ImportError:
            pass
        return res

    @torch.no_grad()
    def fit_expressiveness(self, n: int = 64, groups: tuple[str, ...] = ("head", "brows"),
                           max_gain: float = 4.0) -> dict[str, float]:
        """``postprocess.variance_gain``: per slow group, how much calmer the sampled motion is than the
        held-out targets (median over ``n`` val windows of target std / generated std, at the model's
        default sampling, preset style of each clip's emotion, no transcript, after smoothing), so the
        engine can give the spread back. Lips are never scaled."""
        from rig_mapping.arkit import GROUP_INDICES

        from .samplers import make_sampler
        from .smoothing import smooth_groups

        m = self.model
        m.eval()
        clips = self.val or self.train
        vb = Batches(clips, self.emotions, 991)
        b = vb.windows(n, self.cfg["window"]["frames"])
        names = m.preset_names()
        default = self.cfg["sampling"].get("default_style", "neutral")
        codes = torch.stack([m.preset(clips[i].emotion if clips[i].emotion in names else
                                      (default if default in names else names[0])) for i in b["idx"].tolist()])
        audio = m.encode_audio(b["feats"].to(self.device))
        smp = self.cfg["sampling"]
        x_T = torch.randn(b["motion"].shape, generator=torch.Generator().manual_seed(0)).to(self.device)
        x0 = make_sampler(smp["sampler"], m.schedule, int(smp["steps"])).sample(
            lambda x, t: m.denoise(x, audio, torch.full((len(x),), t, device=self.device), codes), x_T)
        out = m.denormalize(x0).cpu().numpy()
        gt = b["motion"].numpy()
        smooth = self.cfg.get("postprocess", {}).get("smooth_s", {})
        gains: dict[str, float] = {}
        for g in groups:
            idx = list(range(52, gt.shape[-1])) if g == "head" else list(GROUP_INDICES[g])
            ratios = []
            for o, t in zip(out, gt, strict=True):
                ow, oh = smooth_groups(np.clip(o[:, :52], 0, 1), o[:, 52:], self.cfg["fps"], smooth)
                o2 = np.concatenate([ow, oh], axis=1)
                so, st = o2[:, idx].std(axis=0).mean(), t[:, idx].std(axis=0).mean()
                if so > 1e-6 and st > 1e-6:
                    ratios.append(st / so)
            gains[g] = round(float(np.clip(np.median(ratios), 1.0, max_gain)), 3) if ratios else 1.0
        self.model.cfg.setdefault("postprocess", {})["variance_gain"] = gains
        self.metrics["expressiveness"] = {"variance_gain": gains, "windows": n}
        self.log(f"[expressiveness] variance gains {gains}")
        return gains

    # -- stage 3: style predictor (and presets) -----------------------------------------------------
    @torch.no_grad()
    def clip_codes(self, clips: list[Clip]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Style codes (of each clip's own motion), pooled audio tokens and audio stats, per clip."""
        m = self.model
        m.eval()
        codes, toks, stats = [], [], []
        for c in clips:
            x = m.normalize(torch.from_numpy(c.motion).to(self.device))[None]
            codes.append(m.encode_style(x)[0])
            a = m.encode_audio(torch.from_numpy(c.feats).to(self.device)[None])
            toks.append(m.style_predictor.pool_audio(a)[0])
            stats.append(torch.from_numpy(c.stats).to(self.device))
        return torch.stack(codes), torch.stack(toks), torch.stack(stats)

    def compute_presets(self) -> None:
        """Preset codes = mean style code of the training clips of each emotion; also each preset's
        blink rate in the data (the engine's blink prior)."""
        codes, _, _ = self.clip_codes(self.train)
        names = self.model.preset_names()
        rates: dict[str, float] = {}
        for i, name in enumerate(names):
            sel = [j for j, c in enumerate(self.train) if c.emotion == name] if self.emotions else list(range(len(codes)))
            if sel:
                self.model.presets[i] = codes[sel].mean(0)
                rates[name] = round(preset_blink_rate([self.train[j] for j in sel], self.cfg["fps"]), 2)
        self.model.cfg["preset_blink_rates"] = rates
        self.log(f"presets: {names}; blinks/min {rates}")

    def train_style_predictor(self, steps: int, start: int = 0, opt_state: dict | None = None,
                              time_budget: float | None = None) -> None:
        sp = self.model.style_predictor
        codes, toks, stats = self.clip_codes(self.train)
        sp.code_mean.copy_(codes.mean(0))
        sp.code_std.copy_(codes.std(0).clamp(min=1e-3) if len(codes) > 1 else torch.ones_like(codes[0]))
        z = (codes - sp.code_mean) / sp.code_std
        emo = self.batches.emotion_ids(torch.arange(len(self.train)))
        sched = self.model.schedule
        self._sp_val = self.clip_codes(self.val) if self.val else None

        def step_fn(step: int) -> dict[str, torch.Tensor]:
            i = torch.randint(0, len(z), (self.tc["batch"] * 2,))
            t = torch.randint(0, sched.train_steps, (len(i),))
            zt = sched.add_noise(z[i], torch.randn_like(z[i]), t.to(self.device))
            # dropping the audio condition for some clips teaches the unconditional branch guidance needs
            keep = torch.rand(len(i), device=self.device) >= float(self.tc.get("style_prior_drop", 0.0))
            pred = sp(zt, t.to(self.device), toks[i], stats[i], keep)
            loss = F.mse_loss(pred, z[i])
            out = {"diff": loss.detach()}
            if self.emotions and (emo[i] >= 0).any():
                ok = emo[i] >= 0
                # the head reads raw codes (with a little noise so it tolerates predicted ones)
                c = codes[i][ok] + 0.1 * codes.std(0) * torch.randn_like(codes[i][ok])
                ce = F.cross_entropy(sp.emotion_logits(c), emo[i][ok].to(self.device))
                out["emo_ce"] = ce.detach()
                loss = loss + 0.2 * ce
            out["loss"] = loss
            return out

        self._run("style_predictor", steps, list(sp.parameters()), step_fn, self.eval_style_predictor, start,
                  opt_state, time_budget)

    @torch.no_grad()
    def eval_style_predictor(self) -> dict[str, float]:
        sp = self.model.style_predictor
        sp.eval()
        clips = self.val or self.train
        cached = getattr(self, "_sp_val", None)
        codes, toks, stats = cached if cached is not None else self.clip_codes(clips)
        gen = torch.Generator().manual_seed(0)
        pred = sp.sample(toks, stats, self.model.schedule, self.cfg["style_predictor"]["steps"], gen,
                         **prior_sampling(self.cfg))
        res = {"code_rmse_pred": round(float(((pred - codes) ** 2).mean().sqrt()), 4),
               "code_rmse_mean_baseline": round(float(((sp.code_mean - codes) ** 2).mean().sqrt()), 4)}
        emo = torch.tensor([self.emotions.index(c.emotion) if c.emotion in self.emotions else -1 for c in clips])
        ok = emo >= 0
        if self.emotions and ok.any():
            res["emotion_acc_true_code"] = round(float((sp.emotion_logits(codes[ok]).argmax(-1).cpu() == emo[ok]).float().mean()), 4)
            res["emotion_acc_predicted_code"] = round(float((sp.emotion_logits(pred[ok]).argmax(-1).cpu() == emo[ok]).float().mean()), 4)
            if not self.model.presets.abs().sum():
                self.compute_presets()
            names = self.model.preset_names()
            d = torch.cdist(pred[ok], self.model.presets)
            near = [names[j] for j in d.argmin(-1).tolist()]
            truth = [self.emotions[j] for j in emo[ok].tolist()]
            res["emotion_acc_nearest_preset"] = round(float(np.mean([a == b for a, b in zip(near, truth, strict=True)])), 4)
            res["chance"] = round(1 / len(self.emotions), 4)
        return res

    # -- stage 4: lip-closure detector ------------------------------------------------------------
    def _phoned(self, clips: list[Clip]) -> list[Clip]:
        return [c for c in clips if c.phones is not None and bilabial_frames(c.phones).any()]

    def _closure_val(self) -> list[Clip]:
        """The clips the detector is scored and its threshold fitted on: validation clips with bilabials
        (training clips only when no validation clip has any, e.g. a capture folder's split)."""
        clips = self._phoned(self.val) or self._phoned(self.train)
        if not clips:
            raise DataError("no clip with bilabial phones to fit the closure detector's threshold on")
        return clips

    def train_closure_detector(self, steps: int, start: int = 0, opt_state: dict | None = None,
                               time_budget: float | None = None) -> None:
        det = self.model.closure_detector
        if det is None:
            raise ValueError("this model has no closure detector: grow it with "
                             "--grow motion_server/model/configs/parts/closure_detector.json")
        clips = self._phoned(self.train)
        if not clips:
            raise DataError("the closure detector learns from phone timings; none of the training clips has "
                            "bilabial phones (use a corpus built by `talkrig synth` or `talkrig synth --real`)")
        batches = Batches(clips, self.emotions, int(self.tc["seed"]) + 29)
        frames = int(self.tc.get("closure_detector_frames", 96))
        pos_weight = torch.tensor(float(self.tc.get("closure_detector_pos_weight", 4.0)), device=self.device)

        def step_fn(step: int) -> dict[str, torch.Tensor]:
            b = batches.windows(self.tc["batch"] * 2, frames)
            feats = b["feats"].to(self.device)
            target = bilabial_frames(b["phones"].to(self.device))
            logit = det(feats)
            loss = F.binary_cross_entropy_with_logits(logit, target, pos_weight=pos_weight)
            return {"loss": loss}

        # its own learning rate: a small fresh part beside a trained model's fine-tuning rate
        mult = float(self.tc.get("closure_detector_lr", 2e-3)) / float(self.tc["lr"])
        self._run("closure_detector", steps, [{"params": list(det.parameters()), "lr_mult": mult}], step_fn,
                  self.eval_closure_detector, start, opt_state, time_budget)
        self.fit_closure_threshold()
        self._save("closure_detector", steps, None)

    @torch.no_grad()
    def _closure_probs(self, clips: list[Clip]) -> list[np.ndarray]:
        self.model.eval()
        return [self.model.closure_probability(torch.from_numpy(c.feats).to(self.device)[None])[0].cpu().numpy()
                for c in clips]

    def _closure_curve(self, clips: list[Clip], probs: list[np.ndarray],
                       thresholds: list[float]) -> list[dict[str, float]]:
        rows = []
        for th in thresholds:
            tot = np.zeros(4)
            for c, p in zip(clips, probs, strict=True):
                tot += event_scores(p, c.phones, float(self.cfg["fps"]), th)
            rows.append({"threshold": th, "caught": round(tot[0] / max(tot[1], 1), 4),
                         "open_shut": round(tot[2] / max(tot[3], 1), 4), "bilabials": int(tot[1])})
        return rows

    @torch.no_grad()
    def eval_closure_detector(self) -> dict[str, float]:
        clips = self._closure_val()
        probs = self._closure_probs(clips)
        y = np.concatenate([bilabial_frames(c.phones) for c in clips])
        p = np.concatenate(probs)
        # ROC AUC by ranks (Mann-Whitney, ties averaged): the chance a bilabial frame scores above another
        from scipy.stats import rankdata

        ranks = rankdata(p)
        npos = y.sum()
        auc = (ranks[y > 0].sum() - npos * (npos + 1) / 2) / max(npos * (len(y) - npos), 1)
        row = self._closure_curve(clips, probs, [0.5])[0]
        return {"val_frame_auc": round(float(auc), 4), "val_caught_at_0.5": row["caught"],
                "val_open_shut_at_0.5": row["open_shut"], "val_clips": len(clips)}

    def fit_closure_threshold(self) -> None:
        """The operating threshold: the lowest that shuts at most ``closure_false_open_max`` of the
        validation open-vowel frames (a false closure mid-vowel is what a viewer notices; a missed
        one the denoiser may still close on its own)."""
        clips = self._closure_val()
        limit = float(self.tc.get("closure_false_open_max", CLOSURE_FALSE_OPEN_MAX))
        curve = self._closure_curve(clips, self._closure_probs(clips),
                                    [round(x, 2) for x in np.arange(0.05, 0.96, 0.05)])
        ok = [r for r in curve if r["open_shut"] <= limit]
        best = ok[0] if ok else curve[-1]
        if not ok:
            self.log(f"[closure_detector] warning: no threshold keeps false closures on open vowels under "
                     f"{limit:.0%} of the validation frames; using the strictest, {best['threshold']}")
        self.model.cfg.setdefault("sampling", {})["closure_threshold"] = float(best["threshold"])
        self.changed_after_training = [c for c in self.changed_after_training
                                       if c.get("setting") != "sampling.closure_threshold"]
        self.metrics["closure_detector_threshold"] = {"chosen": best, "false_open_max": limit, "curve": curve}
        self.log(f"[closure_detector] threshold {best['threshold']}: catches {best['caught']:.3f} of "
                 f"{best['bilabials']} val bilabials, shuts {best['open_shut']:.3f} of open-vowel frames")


def _legacy_data_by_stage(prev: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints from before ``data_by_stage`` record only their last run's data: it stands for the
    stages that run trained; what the others learnt from is not known."""
    unknown = {"sources": ["unknown (trained before TalkRig recorded data per stage)"]}
    ran = set(prev.get("stages_done", [])) if prev.get("data") else set()
    return {st: (prev["data"] if st in ran else unknown) for st in prev.get("metrics", {})}


def _lip_gap_fn(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Differentiable midline lip gap (cm) of the evaluation face: the face is linear in the weights,
    so gap = min(upper-lip y) - max(lower-lip y) over a few vertices."""
    try:
        from motion_server.evaluation.geometry import LOWER_LIP_MID, UPPER_LIP_MID, load_face
    except ImportError:
        return None
    face = load_face()

    def part(idx: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        ix = np.asarray(idx)
        d = face.arkit_matrix.astype(np.float32) @ face.deltas[:, ix, 1].astype(np.float32)  # [52, n]
        return (torch.from_numpy(face.neutral[ix, 1].astype(np.float32)).to(device), torch.from_numpy(d).to(device))

    (yu, du), (yl, dl) = part(UPPER_LIP_MID), part(LOWER_LIP_MID)

    def gap(w: torch.Tensor) -> torch.Tensor:
        return (yu + w @ du).amin(-1) - (yl + w @ dl).amax(-1)

    return gap


UNBOUND_SECTIONS = ("train", "sampling", "window", "postprocess")


def denoiser_stage_parameters(model: TalkRigModel) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of everything the denoiser stage trains, named as in the model's state dict."""
    parts = [("audio_encoder", model.audio_encoder), ("style_encoder", model.style_encoder),
             ("denoiser", model.denoiser)]
    if model.phone_embed is not None:
        parts.append(("phone_embed", model.phone_embed))
    named = [(f"{prefix}.{n}", p) for prefix, mod in parts for n, p in mod.named_parameters()]
    return named + [("null_style", model.null_style)]


def frozen_prefixes(tc: dict[str, Any]) -> list[str]:
    """``train.freeze``: parameter-name prefixes the denoiser stage leaves as they are."""
    return [str(f) for f in tc.get("freeze", [])]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def check_freeze_names(frozen: list[str], names: list[str]) -> None:
    """Every ``train.freeze`` entry is a parameter name or a prefix of some (a typo must not train all)."""
    for f in frozen:
        if not any(_under(n, f) for n in names):
            raise ValueError(f"train.freeze names {f!r}, which is no parameter of the denoiser stage; name a "
                             "module such as style_encoder, null_style, denoiser.s_mlp or audio_encoder")


def _check_freeze(cfg: dict[str, Any], base: TalkRigModel | None, state: tuple[dict, dict] | None) -> None:
    """``train.freeze`` names parameters of the model (checked before minutes of features), and a resumed
    stage freezes what it froze when it was saved (its optimizer state holds only those parameters)."""
    frozen = frozen_prefixes(cfg.get("train", {}))
    if base is not None:
        check_freeze_names(frozen, [n for n, _ in denoiser_stage_parameters(base)])
    if state is not None and sorted(state[1].get("freeze", [])) != sorted(frozen):
        raise ValueError(f"the saved state froze {state[1].get('freeze', [])} and this run freezes {frozen}; "
                         "resume with the same train.freeze, or delete train_state.json and "
                         "train_state.safetensors in the output folder to restart the stage")


def apply_overrides(cfg: dict[str, Any], sets: list[str], frozen: bool) -> None:
    """``section.key=JSON`` overrides. With a loaded checkpoint only sections its weights do not depend
    on may change (train, sampling, window, postprocess; a missing one of these is created)."""
    from .checkpoint import BOUND_KEYS

    for item in sets:
        key, sep, val = item.partition("=")
        sec, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--set {item!r}: use section.key=value, e.g. train.lr=0.0003")
        if frozen and sec in BOUND_KEYS:
            raise ValueError(f"--set {item!r}: a loaded checkpoint's {sec} is fixed by its weights; only "
                             "train, sampling, window and postprocess settings may change")
        if sec not in cfg and (not frozen or sec not in UNBOUND_SECTIONS):
            raise ValueError(f"--set {item!r}: no section {sec!r} in the config")
        section = cfg.setdefault(sec, {})
        if not isinstance(section, dict):
            raise ValueError(f"--set {item!r}: {sec} is not a section")
        try:
            section[name] = json.loads(val)
        except json.JSONDecodeError:
            section[name] = val


def preset_blink_rate(clips: list[Clip], fps: float) -> float:
    """Blinks per minute over a set of clips (their motion's eyeBlink channels)."""
    from .postprocess import blink_events

    n = sum(len(blink_events(c.motion[:, :52])) for c in clips)
    minutes = sum(len(c.motion) for c in clips) / fps / 60.0
    return n / minutes if minutes > 0 else 0.0


# -- entry point ------------------------------------------------------------------------------------


def split_val(clips: list[Clip], frac: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Hold out whole groups when there are several (unseen speaker/emotion combos), else clips."""
    rng = np.random.default_rng(seed)
    if len(clips) < 4:
        return clips, []
    order = rng.permutation(len(clips))
    n_val = max(1, int(round(frac * len(clips))))
    val = [clips[i] for i in order[:n_val]]
    train = [clips[i] for i in order[n_val:]]
    return train, val


def _fingerprint(folder: Path) -> str:
    """Changes when files are added, removed or rewritten (so a grown corpus is re-read)."""
    import hashlib

    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("cache_"):
            st = p.stat()
            h.update(f"{p.relative_to(folder)}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()


def _corpus_clips(cfg: dict[str, Any], out: Path, data: Path, key: dict[str, Any], tag: str,
                  log: Log) -> tuple[list[Clip], list[Clip]]:
    """(train, val) clips of one data folder: a corpus's splits, or a capture folder's pairs (no val)."""
    if not data.is_dir():
        raise DataError(f"--data {data}: not a folder (build a corpus with `talkrig synth`)")
    key = {**key, "src": str(data.resolve()), "data_fingerprint": _fingerprint(data)}
    if (data / "MANIFEST.json").is_file() or not any(p.suffix.lower() in (".wav", ".flac") for p in data.iterdir()):
        train = cached_clips({**key, "split": "train"}, out, f"train{tag}",
                             lambda: build_clips(corpus_utterances(data, "train"), cfg, "train features"))
        try:
            val = cached_clips({**key, "split": "val"}, out, f"val{tag}",
                               lambda: build_clips(corpus_utterances(data, "val"), cfg, "val features"))
        except (DataError, ValueError, KeyError, FileNotFoundError) as e:
            log(f"{data}: no usable val split ({e}); holding out part of train")
            val = []
        return train, val
    return cached_clips({**key, "split": "folder"}, out, f"folder{tag}",
                        lambda: build_clips(capture_utterances(data), cfg, "features")), []


def load_training_clips(cfg: dict[str, Any], out: Path, folders: list[Path], captures: Path | None,
                        log: Log) -> tuple[list[Clip], list[Clip], dict[str, Any]]:
    key: dict[str, Any] = {"features": cfg["features"], "speech_encoder": cfg.get("speech_encoder"),
                           "fps": cfg["fps"], "phone_track": 2}
    train: list[Clip] = []
    val: list[Clip] = []
    sources: list[str] = []
    for i, folder in enumerate(folders):
        tr, va = _corpus_clips(cfg, out, folder, key, "" if i == 0 else str(i), log)
        train += tr
        val += va
        sources.append(str(folder))
    if captures is not None:
        cap_key = {**key, "src": str(Path(captures).resolve()), "split": "captures",
                   "captures_fingerprint": _fingerprint(Path(captures))}
        cap = cached_clips(cap_key, out, "captures",
                           lambda: build_clips(capture_utterances(Path(captures)), cfg, "capture features"))
        train = train + cap
        sources.append(str(captures))
    if not train:
        raise DataError("no training data: give --data CORPUS and/or --captures DIR")
    if not val:
        train, val = split_val(train, cfg["train"]["val_fraction"], cfg["train"]["seed"])
    summary = {"sources": sources, "train": summarize(train, cfg["fps"]), "val": summarize(val, cfg["fps"]) if val else {}}
    return train, val, summary


def run_training(out: str | Path, config: str | Path | dict = "default",
                 data: str | Path | list[str | Path] | None = None,
                 captures: str | Path | None = None, device: str = "auto", resume: bool = False,
                 stage: str = "all", steps: int | None = None, finetune: str | Path | None = None,
                 time_budget_min: float | None = None, log: Log = print, sets: list[str] | None = None,
                 grow: str | Path | None = None) -> Path:
    """Train (or fine-tune) into ``out``; returns the checkpoint folder."""
    out = Path(out)
    if (out / "model.safetensors").is_file() and not resume:
        raise DataError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    base: TalkRigModel | None = None
    state = load_train_state(out) if resume else None
    if resume and (out / "model.safetensors").is_file():
        base = load_checkpoint(out, dev)
        cfg = base.cfg
    elif finetune is not None and grow is not None:
        parts = json.loads(Path(grow).read_text())
        if "speech_encoder" in parts:
            parts["speech_encoder"] = pin_speech_encoder(parts["speech_encoder"])
        base = grow_checkpoint(finetune, parts, dev)
        cfg = base.cfg
        log(f"grew {finetune} with new part(s) {sorted(parts)} (initialised fresh)")
    elif finetune is not None:
        base = load_checkpoint(finetune, dev)
        cfg = base.cfg
    else:
        cfg = dict(config) if isinstance(config, dict) else load_config(config)
        if cfg.get("speech_encoder"):
            cfg["speech_encoder"] = pin_speech_encoder(cfg["speech_encoder"])
    cfg = json.loads(json.dumps(cfg))
    if not resume:
        # what the base run froze was a choice for that run, not a property of its weights
        cfg.get("train", {}).pop("freeze", None)
    apply_overrides(cfg, sets or [], frozen=base is not None)
    if base is not None:
        base.cfg = cfg
    _check_freeze(cfg, base, state)
    folders = [Path(d) for d in ([data] if isinstance(data, (str, Path)) else (data or []))]
    train, val, summary = load_training_clips(cfg, out, folders,
                                              Path(captures) if captures else None, log)
    log(f"data: {json.dumps(summary)} | device {dev}")
    trains_denoiser = stage in ("all", "denoiser")
    refit = base is not None and not resume and trains_denoiser and bool(cfg["train"].get("refit_motion_stats", False))
    if refit:
        # the targets changed scale (e.g. a recalibrated performer moves the head 5x more): normalise
        # them afresh, or the fine-tuned denoiser would see channels far from unit variance (only when the
        # denoiser trains: other stages would leave it reading targets normalised unlike its training)
        allm = np.concatenate([c.motion for c in train])
        base.set_motion_stats(torch.from_numpy(allm.mean(0)).to(dev), torch.from_numpy(allm.std(0)).to(dev))
        log("refit the motion normalisation statistics on the training data")
    tr = Trainer(out, cfg, train, val, dev, log, model=base, data_summary=summary)
    tr.refit_stats = refit
    if base is not None:
        prev = cfg.get("training", {})
        tr.metrics = dict(prev.get("metrics", {}))
        tr.done = list(prev.get("stages_done", [])) if resume else []
        tr.data_by_stage = dict(prev.get("data_by_stage") or _legacy_data_by_stage(prev))
        tr.changed_after_training = list(prev.get("changed_after_training", []))
    stages = (*STAGES, "expressiveness") if stage == "all" else (stage,)
    if finetune is not None and stage == "all":
        # captures teach the motion; the lip expert and style prior stay as they are
        stages = ("denoiser", "expressiveness")
    budget = time_budget_min * 60 if time_budget_min else None
    tc = cfg["train"]
    for st in stages:
        if st == "expressiveness":  # a fit, not a training stage: no steps, no optimizer
            tr.fit_expressiveness()
            tr._save(st, 0, None)
            continue
        if st not in STAGES:
            raise ValueError(f"unknown stage {st!r}; choose one of {', '.join(STAGES)}, expressiveness or all")
        part = OPTIONAL_STAGES.get(st)
        if part is not None and not tr.model.cfg.get(part):
            if stage == st:
                raise ValueError(f"stage {st!r} needs a model with a {part} part: grow it with "
                                 f"--grow motion_server/model/configs/parts/{part}.json")
            continue
        if resume and st in tr.done and not (state and state[1].get("stage") == st):
            log(f"[{st}] already done, skipping (resume)")
            continue
        n = steps if steps is not None else int(tc.get(f"{st}_steps", DEFAULT_STEPS.get(st, 0)))
        start, opt_state = 0, None
        if state and state[1].get("stage") == st:
            opt_state, start = state[0], int(state[1]["step"])
            tr.done = [d for d in state[1].get("done", []) if d != st]
            log(f"[{st}] resuming at step {start}")
        tr.data_by_stage[st] = summary
        getattr(tr, f"train_{st}")(n, start, opt_state, budget if st == "denoiser" else None)
        if not tr.model.presets.abs().sum() or (st == "denoiser" and tr.style_codes_move()):
            tr.compute_presets()
            tr._save(st, n, None)
        elif st == "denoiser":
            # the style codes did not move, so the presets still mean what they meant: recomputing them
            # from this run's clips would change every preset a user picks (a fine-tune on mostly neutral
            # speech gave presets a third weaker)
            log("[denoiser] presets kept: the style encoder was frozen and the motion normalisation kept")
    return out
