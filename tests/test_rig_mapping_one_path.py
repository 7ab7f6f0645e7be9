"""One mapping decision: ``talkrig map-report`` and the Blender add-on give the same answer for a rig.

Both call ``rig_mapping.automap.map_rig``; these tests run the CLI (in-process, through its JSON) and the
add-on's mapping entry point (``blender_addon.core.mapping``, which needs no bpy) on the same shape-key
and bone names, and compare the channel -> target tables, the head-pose bones and the driven bones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blender_addon.core import mapping as addon_mapping
from motion_server.cli import main
from rig_mapping import ARKIT_NAMES
from rig_mapping.automap import find_bones, map_rig

_ASSET = Path(__file__).resolve().parents[1] / "motion_server/assets/ict_face_arkit.npz"
ICT_SHAPES = [str(n) for n in np.load(_ASSET)["names"]]
# the armature blender_addon.core.demo_head builds next to the ICT mesh
DEMO_HEAD_BONES = ["root", "neck", "head", "jaw"]
ROCKETBOX_SHAPES = [f"AK_{i:02d}_{n[0].upper()}{n[1:]}" for i, n in enumerate(sorted(ARKIT_NAMES), 1)]
ROCKETBOX_BONES = ["Bip01", "Bip01 Pelvis", "Bip01 Spine", "Bip01 Neck", "Bip01 Head", "Bip01 HeadNub"]
MIXAMO_SHAPES = ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "mouthFunnel"]
MIXAMO_BONES = ["mixamorig:Hips", "mixamorig:Spine", "mixamorig:Neck", "mixamorig:Head", "mixamorig:HeadTop_End"]

# name -> (shape keys, bone names, expected driven bones by role, expected bones found but not driven)
RIGS: dict[str, tuple[list[str], list[str], dict[str, str], set[str]]] = {
    "issue_example": (["jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthClose"], ["DEF-spine.006", "DEF-jaw", "neck"],
                      {"head": "DEF-spine.006", "neck": "neck"}, {"DEF-jaw"}),
    "ict_demo_head": (ICT_SHAPES, DEMO_HEAD_BONES, {"head": "head", "neck": "neck"}, {"jaw"}),
    "rocketbox": (ROCKETBOX_SHAPES, ROCKETBOX_BONES, {"head": "Bip01 Head", "neck": "Bip01 Neck"}, set()),
    "mixamo": (MIXAMO_SHAPES, MIXAMO_BONES, {"head": "mixamorig:Head", "neck": "mixamorig:Neck"}, set()),
    "jaw_bone_no_jawopen": (["eyeBlink_L", "eyeBlink_R", "mouthSmile_L", "mouthSmile_R"],
                            ["spine", "DEF-neck", "DEF-head", "DEF-jaw"],
                            {"head": "DEF-head", "neck": "DEF-neck", "jaw": "DEF-jaw"}, set()),
}


def _write(path: Path, names: list[str]) -> Path:
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def _cli_json(capsys, tmp_path: Path, shapes: list[str], bones: list[str], *extra: str) -> dict:
    rc = main(["map-report", "--names", str(_write(tmp_path / "shapes.txt", shapes)),
               "--bones", str(_write(tmp_path / "bones.txt", bones)), "--json", *extra])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


@pytest.mark.parametrize("rig", sorted(RIGS))
def test_map_report_and_addon_agree(rig: str, capsys, tmp_path: Path):
    shapes, bones, roles, skipped = RIGS[rig]
    cli = _cli_json(capsys, tmp_path, shapes, bones)
    addon = addon_mapping.report(shapes, bones)
    assert addon.matched == cli["channel_targets"]
    assert addon.head_targets == cli["head_targets"]
    assert addon.bones == cli["bone_roles"] == roles
    assert set(addon.skipped_bones) == set(cli["skipped_bones"]) == skipped
    # what the add-on keys is the profile the report shows
    prof = addon_mapping.auto_profile(shapes, bones)
    assert prof.to_dict() == cli["profile"]
    assert set(prof.bone_names) == set(roles.values())
    assert set(cli["head_targets"]["pitch"]) == {roles["head"], roles["neck"]}


def test_jaw_policy_shape_key_or_bone(capsys, tmp_path: Path):
    shapes, bones, _, _ = RIGS["issue_example"]
    table = _cli_json(capsys, tmp_path, shapes, bones)["channel_targets"]
    assert table["jawOpen"] == ["jawOpen"]  # the shape key opens the mouth, the jaw bone stays still
    shapes, bones, _, _ = RIGS["jaw_bone_no_jawopen"]
    table = addon_mapping.report(shapes, bones).matched
    assert table["jawOpen"] == ["bone:DEF-jaw"]  # no jawOpen shape key: the jaw bone opens the mouth
    assert table["jawLeft"] == table["jawRight"] == ["bone:DEF-jaw"]


def test_a_given_profile_is_fitted_the_same_way(capsys, tmp_path: Path):
    shapes, bones, _, _ = RIGS["issue_example"]
    cli = _cli_json(capsys, tmp_path, shapes, bones, "--profile", "bones_head_jaw")
    addon = addon_mapping.report(shapes, bones, addon_mapping.load_profile("bones_head_jaw"))
    assert addon.matched == cli["channel_targets"] == {"jawOpen": ["bone:DEF-jaw"], "jawLeft": ["bone:DEF-jaw"],
                                                       "jawRight": ["bone:DEF-jaw"]}
    assert addon.bones == cli["bone_roles"] == {"head": "DEF-spine.006", "jaw": "DEF-jaw"}
    fitted = addon_mapping.fitted_profile(shapes, bones, addon_mapping.load_profile("bones_head_jaw"))
    assert fitted.to_dict() == cli["profile"]


def test_map_report_text_names_the_undriven_jaw(capsys, tmp_path: Path):
    shapes, bones, _, _ = RIGS["issue_example"]
    rc = main(["map-report", "--names", str(_write(tmp_path / "s.txt", shapes)),
               "--bones", str(_write(tmp_path / "b.txt", bones))])
    out = capsys.readouterr().out
    assert rc == 0 and "Bones found but not driven" in out and "DEF-jaw" in out and "jawOpen" in out


@pytest.mark.parametrize("names, expected", [
    (["DEF-spine", "DEF-neck", "DEF-head", "DEF-jaw"], {"head": "DEF-head", "neck": "DEF-neck", "jaw": "DEF-jaw"}),
    (["mixamorig:Hips", "mixamorig:Neck", "mixamorig:Head", "mixamorig:HeadTop_End"],
     {"head": "mixamorig:Head", "neck": "mixamorig:Neck"}),
    (["CC_Base_NeckTwist01", "CC_Base_Head", "CC_Base_JawRoot"],
     {"head": "CC_Base_Head", "neck": "CC_Base_NeckTwist01", "jaw": "CC_Base_JawRoot"}),
    (["ORG-neck", "c_head.x", "c_jawbone.x"], {"head": "c_head.x", "neck": "ORG-neck", "jaw": "c_jawbone.x"}),
    (["root", "Head", "mandible"], {"head": "Head", "jaw": "mandible"}),
    (["spine", "chest", "hand.L"], {}),
])
def test_bone_names_found_from_template_data(names: list[str], expected: dict[str, str]):
    """The add-on's find_bones is rig_mapping's (template ``match`` names + ``bone_prefixes``)."""
    assert find_bones(names) == addon_mapping.find_bones(names) == expected


def test_addon_holds_no_mapping_policy_of_its_own():
    """No second copy: the add-on's mapping module has no bone regexes and no automap logic."""
    src = (Path(addon_mapping.__file__)).read_text(encoding="utf-8")
    target_src = (Path(addon_mapping.__file__).parent / "target.py").read_text(encoding="utf-8")
    for text in (src, target_src):
        assert "import re" not in text and "BoneTarget(" not in text
    assert not (Path(addon_mapping.__file__).parents[1] / "data" / "bone_patterns.json").exists()
    assert map_rig(["jawOpen"], ["jaw"]).skipped_bones  # the policy lives here
