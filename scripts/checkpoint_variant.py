"""A copy of a checkpoint with one optional part taken out, one sampling setting changed, or its weights
averaged with another checkpoint's, for experiments: regrow a part from scratch (``--without
closure_detector``, then ``talkrig train --grow``), score another operating point (``--set
sampling.closure_threshold=0.4``, then ``talkrig eval --model``), or take a point between a fine-tune and
the model it started from (``--average-with BASE --weight 0.5``: every tensor (1 - w) * MODEL + w * BASE).
The source folders are only read.

    python scripts/checkpoint_variant.py OUT [--model CHECKPOINT] [--without PART ...] [--set KEY=VALUE ...]
        [--average-with CHECKPOINT [--weight W]]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# sampling settings that belong to a part: dropped with it
PART_SETTINGS = {"closure_detector": ("closure_threshold",)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="new checkpoint folder (must not exist)")
    p.add_argument("--model", type=Path, default=REPO / "motion_server" / "model" / "default",
                   help="checkpoint folder to copy (default: the bundled model)")
    p.add_argument("--without", nargs="+", default=[], metavar="PART", help="optional parts to leave out")
    p.add_argument("--set", nargs="+", default=[], metavar="sampling.KEY=VALUE", dest="settings",
                   help="sampling settings to change (JSON values)")
    p.add_argument("--average-with", type=Path, metavar="CHECKPOINT",
                   help="average every weight with this checkpoint's (same architecture, e.g. the model a "
                        "fine-tune started from)")
    p.add_argument("--weight", type=float, default=None,
                   help="with --average-with: its share w, 0 < w < 1 (default 0.5)")
    args = p.parse_args(argv)
    if args.average_with is None and args.weight is not None:
        print("--weight is the share of --average-with CHECKPOINT; name the checkpoint to average with",
              file=sys.stderr)
        return 2
    if args.average_with is not None and args.weight is None:
        args.weight = 0.5
    if args.average_with is not None and not 0.0 < args.weight < 1.0:
        print(f"--weight {args.weight}: give a share between 0 and 1 (0.5 = halfway)", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"{args.out} exists; choose a new folder", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import shutil

    from motion_server.model.checkpoint import BOUND_KEYS, CheckpointError, load_checkpoint, save_checkpoint
    from motion_server.model.network import TalkRigModel
    from rig_mapping.atomic import temp_name

    try:
        model = load_checkpoint(args.model)
    except CheckpointError as exc:
        print(f"--model {args.model}: {exc}", file=sys.stderr)
        return 2
    cfg = json.loads(json.dumps(model.cfg))
    sampling = cfg.setdefault("sampling", {})
    changes = cfg.setdefault("training", {}).setdefault("changed_after_training", [])
    dropped: set[str] = set()
    for part in args.without:
        if part not in PART_SETTINGS or part not in cfg:
            print(f"--without {part}: not an optional part of this checkpoint "
                  f"(parts that can be left out: {', '.join(p for p in PART_SETTINGS if p in cfg) or 'none'})",
                  file=sys.stderr)
            return 2
        cfg.pop(part)
        for key in PART_SETTINGS[part]:
            sampling.pop(key, None)
            dropped.add(key)
        changes.append({"removed": part, "by": "scripts/checkpoint_variant.py"})
    for item in args.settings:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section != "sampling" or not name or not value:
            print(f"--set {item}: give sampling.KEY=VALUE (only sampling settings leave the weights' meaning "
                  "alone)", file=sys.stderr)
            return 2
        if name in dropped or name not in sampling:
            have = ", ".join(sorted(sampling))
            print(f"--set {item}: this checkpoint has no sampling.{name} (it has: {have})", file=sys.stderr)
            return 2
        try:
            new = json.loads(value)
        except ValueError:
            print(f"--set {item}: {value!r} is not a JSON value (numbers as 0.4, text in quotes)", file=sys.stderr)
            return 2
        if type(new) is not type(sampling[name]) and not (isinstance(new, (int, float))
                                                          and isinstance(sampling[name], (int, float))):
            print(f"--set {item}: sampling.{name} is {sampling[name]!r}; give a value of the same kind",
                  file=sys.stderr)
            return 2
        # the config says what was changed after training, beside the metrics training recorded
        changes.append({"setting": key, "from": sampling[name], "to": new, "by": "scripts/checkpoint_variant.py"})
        sampling[name] = new
    smaller = TalkRigModel(cfg)
    state = {k: v for k, v in model.state_dict().items() if k in smaller.state_dict()}
    if args.average_with is not None:
        try:
            other_model = load_checkpoint(args.average_with)
        except CheckpointError as exc:
            print(f"--average-with {args.average_with}: {exc}", file=sys.stderr)
            return 2
        other = other_model.state_dict()
        # same shapes are not enough: the weights must mean the same (emotions, features, encoder, ...)
        differ = sorted(k for k in BOUND_KEYS if model.cfg.get(k) != other_model.cfg.get(k))
        odd = differ + sorted(k for k in state if k not in other or other[k].shape != state[k].shape)
        if odd:
            print(f"--average-with {args.average_with}: its weights do not match this model's ({', '.join(odd[:4])}"
                  f"{' ...' if len(odd) > 4 else ''}); average only a fine-tune with the model it started from",
                  file=sys.stderr)
            return 2
        w = float(args.weight)
        state = {k: (1.0 - w) * v + w * other[k] if v.is_floating_point() else v for k, v in state.items()}
        weights = args.average_with / "model.safetensors" if args.average_with.is_dir() else args.average_with
        # the path alone would not say which weights (a folder like the bundled model's changes over time)
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        changes.append({"averaged_with": str(args.average_with), "sha256": digest, "weight": w,
                        "by": "scripts/checkpoint_variant.py"})
    smaller.load_state_dict(state, strict=True)
    # written beside OUT under the project's temp name (a killed run's leftover is swept like any other)
    # and renamed when it loads: a failure leaves nothing at OUT
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(args.out)
    try:
        save_checkpoint(smaller, tmp)
        load_checkpoint(tmp)
        tmp.rename(args.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
