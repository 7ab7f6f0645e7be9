"""``talkrig map-report``: show how ARKit curves would map onto a character, before anything is keyed.

    talkrig map-report --names shapes.txt                 # auto-map: pick the best preset or build one
    talkrig map-report --names shapes.txt --profile vrm   # evaluate one preset (or a .toml/.json file)
    talkrig map-report --names shapes.txt --bones bones.txt --save-profile my_rig.toml

Name files hold one shape-key (or bone) name per line; blank lines and lines starting with ``#`` are
skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rig_mapping.automap import map_rig
from rig_mapping.profile import ProfileError, list_presets


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "map-report",
        help="report how ARKit channels map onto a character's shape keys",
        description="Match a character's shape-key names against the mapping presets (or one profile) and "
                    "report matched targets, unmatched shapes and unused ARKit channels.",
    )
    p.add_argument("--names", required=True, type=Path, help="text file, one shape-key name per line")
    p.add_argument("--bones", type=Path,
                   help="optional text file of the armature's bone names, one per line (finds head/neck/jaw bones)")
    p.add_argument("--profile", help=f"preset name ({', '.join(list_presets())}) or a .toml/.json profile; "
                                     "default: choose automatically")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    p.add_argument("--save-profile", type=Path, help="write the resulting profile (.toml or .json) to edit/reuse")
    p.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                   help="allow --save-profile to replace an existing file")
    p.set_defaults(func=run)


def read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"names file {path} not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise ProfileError(f"names file {path} is not UTF-8 text; save it as UTF-8, one name per line") from None
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def run(args: argparse.Namespace) -> int:
    try:
        names = read_names(args.names)
        bones = read_names(args.bones) if args.bones else []
        if not names:
            print(f"talkrig map-report: {args.names} lists no names (one shape-key name per line)", file=sys.stderr)
            return 2
        # the same call the Blender add-on makes, so this report is what the add-on keys
        result = map_rig(names, bones, args.profile)
        if args.save_profile:
            if not result.profile.shapes and not result.profile.bones:
                # An empty profile could be written but never loaded again ("maps nothing").
                raise ProfileError(f"no shape or bone matched, so there is no profile to write to "
                                   f"{args.save_profile}; check the names or choose another --profile")
            result.profile.save(args.save_profile, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ProfileError) as e:
        print(f"talkrig map-report: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.format_report())
        if args.save_profile:
            print(f"\nProfile written to {args.save_profile}")
    return 0
