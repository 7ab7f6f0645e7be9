"""Checkpoints: ``model.safetensors`` (weights) + ``config.json`` (architecture, feature settings, fps,
channel order, presets, training-data summary). No pickle anywhere.

The weights file carries, in its metadata, the JSON of the settings its tensors depend on; loading
refuses a config.json that disagrees (other channel order, feature settings, architecture) or weights
with missing/unexpected/mis-shaped tensors, naming what differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from rig_mapping.arkit import ARKIT_NAMES, HEAD_CHANNELS
from rig_mapping.atomic import atomic_output, write_bytes_atomic

from .config import CONFIG, WEIGHTS, CheckpointError, read_config, validate_config
from .network import TalkRigModel

FORMAT = "talkrig-diffusion-1"
# settings that change what the weights mean; they must match between the two files
BOUND_KEYS = ("fps", "features", "model", "diffusion", "lip_expert", "style_predictor", "channel_order",
              "presets", "emotions", "phones", "speech_encoder", "closure_detector")


def channel_order() -> list[str]:
    return list(ARKIT_NAMES) + [f"head.{c}" for c in HEAD_CHANNELS]


def _bound(cfg: dict[str, Any]) -> str:
    # absent sections are left out, so adding an optional part to BOUND_KEYS keeps older files loadable
    return json.dumps({k: cfg[k] for k in BOUND_KEYS if cfg.get(k) is not None}, sort_keys=True)


def save_checkpoint(model: TalkRigModel, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + config into ``out_dir`` (created). ``extra`` keys (e.g. data summary) go to config."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(model.cfg)
    cfg["format"] = FORMAT
    cfg["channel_order"] = channel_order()
    cfg.update(extra or {})
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # atomic (temp beside + rename): a kill mid-save never leaves a truncated checkpoint in place
    with atomic_output(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "bound": _bound(cfg)})
    write_bytes_atomic(out / CONFIG, (json.dumps(cfg, indent=2) + "\n").encode("utf-8"))
    model.cfg = cfg
    return out


def _damaged(weights: Path, e: Exception) -> CheckpointError:
    size = weights.stat().st_size if weights.exists() else 0
    what = "is empty" if size == 0 else f"is not a complete safetensors file ({size} bytes: {e})"
    return CheckpointError(f"{weights} {what}; it was cut off while copying or saving: copy the checkpoint "
                           "folder again, or retrain it with `talkrig train`")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> TalkRigModel:
    p = Path(path)
    weights = p / WEIGHTS if p.is_dir() else p
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights not found: {weights} (train one with `talkrig train`)")
    cfg = read_config(p)
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{p}: format {cfg.get('format')!r} is not {FORMAT!r}")
    if cfg.get("channel_order") != channel_order():
        raise CheckpointError(f"{p}: channel order differs from TalkRig's ARKit order + head channels; "
                              "the model was trained for another layout and cannot be used as is")
    try:
        validate_config(cfg)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{p}: {CONFIG} is not a usable model config ({type(e).__name__}: {e}); use "
                              f"the {CONFIG} saved with the weights") from None
    try:
        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
        stored = json.loads(meta.get("bound", "{}") or "{}")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for a damaged header
        raise _damaged(weights, e) from None
    diff = sorted(k for k in BOUND_KEYS if stored.get(k) != cfg.get(k))
    if diff or "bound" not in meta:
        raise CheckpointError(f"{p}: {CONFIG} does not match the weights in {diff or 'metadata'}; "
                              "use the config.json saved with these weights")
    model = TalkRigModel(cfg)
    try:
        state = load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - a header that parses but tensor data cut short
        raise _damaged(weights, e) from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(f"{p}: weights do not fit the architecture: missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}, wrong shape {shapes[:4]}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def grow_checkpoint(path: str | Path, sections: dict[str, Any], device: str | torch.device = "cpu") -> TalkRigModel:
    """Load a checkpoint and add optional parts it lacks (config ``sections`` it does not have, e.g.
    ``phones``). Every stored tensor must still fit; the new parts start at their initial values.
    Changing a section the checkpoint already has is refused (that would change what its weights mean)."""
    old = load_checkpoint(path, device)
    clash = sorted(k for k in sections if k in old.cfg and old.cfg[k] != sections[k])
    if clash:
        raise CheckpointError(f"{path}: cannot change existing section(s) {clash} of a trained model; "
                              "only sections it lacks can be added")
    cfg = {**json.loads(json.dumps(old.cfg)), **json.loads(json.dumps(sections))}
    try:
        validate_config(cfg)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    # the new parts start from seeded weights (the checkpoint's training seed), so a grow is reproducible
    with torch.random.fork_rng():
        torch.manual_seed(int(cfg.get("train", {}).get("seed", 0)))
        model = TalkRigModel(cfg)
    own = model.state_dict()
    state = {}
    for k, v in old.state_dict().items():
        if k in own and own[k].shape != v.shape:
            # a new feature stream widens the layers that read the feature rows: the old columns are
            # kept and the new ones start at zero, so the grown model starts out identical
            if v.dim() != 2 or own[k].shape[0] != v.shape[0] or own[k].shape[1] < v.shape[1]:
                raise CheckpointError(f"{path}: tensor {k} {list(v.shape)} does not fit the grown model "
                                      f"{list(own[k].shape)}")
            wide = torch.zeros_like(own[k])
            wide[:, : v.shape[1]] = v
            v = wide
        state[k] = v
    missing = model.load_state_dict(state, strict=False)
    if missing.unexpected_keys:
        raise CheckpointError(f"{path}: tensors {missing.unexpected_keys[:4]} do not fit the grown model")
    return model.to(device)


# -- training state (optimizer + step), also without pickle --------------------------------------


def save_train_state(out_dir: str | Path, optim_state: dict[str, Any], info: dict[str, Any]) -> None:
    out = Path(out_dir)
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": optim_state["param_groups"], "state": {}}
    for idx, st in optim_state["state"].items():
        plain["state"][str(idx)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                plain["state"][str(idx)][k] = v
    with atomic_output(out / "train_state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_bytes_atomic(out / "train_state.json", json.dumps({"optimizer": plain, **info}, indent=1).encode("utf-8"))


def load_train_state(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    out = Path(out_dir)
    if not (out / "train_state.json").is_file():
        return None
    meta = json.loads((out / "train_state.json").read_text())
    tensors = load_file(str(out / "train_state.safetensors"))
    opt = meta.pop("optimizer")
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in opt["state"].items()}
    for key, t in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = t
    return {"state": state, "param_groups": opt["param_groups"]}, meta
