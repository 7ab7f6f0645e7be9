"""``talkrig train``: train or fine-tune the diffusion motion model."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train / fine-tune the diffusion motion model",
                       description="Stages: lip expert, then denoiser (with the frozen lip expert as a loss), "
                                   "then style predictor. Output: a checkpoint folder (model.safetensors + "
                                   "config.json) usable as DiffusionEngine(model=OUT).")
    p.add_argument("--data", nargs="+", metavar="DIR",
                   help="corpus folder(s) (from `talkrig synth` or `talkrig synth --real`) or a folder of "
                        "audio+motion pairs; several are trained on together")
    p.add_argument("--out", required=True, help="output checkpoint folder")
    p.add_argument("--config", default="default", help="config name (tiny, default) or JSON file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue from the state saved in --out")
    p.add_argument("--stage", default="all",
                   choices=["all", "lip_expert", "denoiser", "style_predictor", "closure_detector", "expressiveness"],
                   help="all = the training stages (closure_detector where the model has one), then the "
                        "expressiveness fit (how much calmer sampled head and brows are than held-out targets; "
                        "postprocess.variance_gain); with --finetune, all = denoiser + expressiveness; "
                        "closure_detector also fits sampling.closure_threshold")
    p.add_argument("--steps", type=int, help="steps per stage (default: from the config)")
    p.add_argument("--finetune", help="start from this checkpoint folder (e.g. the bundled default)")
    p.add_argument("--grow", metavar="PARTS.json",
                   help="with --finetune: add the config sections in this file that the checkpoint lacks, new "
                        "parts starting fresh (e.g. motion_server/model/configs/parts/phones.json adds the "
                        "transcript phone track)")
    p.add_argument("--captures", help="folder of <name>.wav + <name>.csv (Live Link Face) captures to train on")
    p.add_argument("--time-budget", type=float, help="stop the denoiser stage after this many minutes")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.0003 (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from motion_server.model.config import ConfigError
    from motion_server.model.data import DataError
    from motion_server.model.train import run_training

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data and not args.captures:
        print("talkrig train: give --data CORPUS and/or --captures DIR", file=sys.stderr)
        return 2
    if args.grow and (not args.finetune or args.resume):
        print("talkrig train: --grow adds parts to the checkpoint given by --finetune (and starts a new --out); "
              "use it with --finetune CKPT, without --resume", file=sys.stderr)
        return 2
    try:
        out = run_training(args.out, args.config, args.data, args.captures, args.device, args.resume,
                           args.stage, args.steps, args.finetune, args.time_budget,
                           log=lambda s: print(s, file=sys.stderr, flush=True), sets=args.set, grow=args.grow)
    except (ConfigError, DataError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"talkrig train: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0
