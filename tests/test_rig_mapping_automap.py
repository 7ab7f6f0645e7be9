"""Auto-mapping real rigs' shape names onto the ARKit channels."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from rig_mapping import ARKIT_INDEX, ARKIT_NAMES, FaceMotion
from rig_mapping.automap import automap, build_auto_profile
from rig_mapping.profile import Profile, apply_profile, load_profile

VRM0 = ["Neutral", "A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R", "Joy", "Angry", "Sorrow", "Fun",
        "Surprised"]


@pytest.fixture(scope="module")
def ict_names(repo_dir: Path) -> list[str]:
    return [str(n) for n in np.load(repo_dir / "motion_server/assets/ict_face_arkit.npz")["names"]]


def rocketbox_names() -> list[str]:
    return [f"AK_{i:02d}_{n[0].upper()}{n[1:]}" for i, n in enumerate(sorted(ARKIT_NAMES), 1)]


def test_ict_facekit_maps_51_channels_with_split_brows_and_cheeks(ict_names):
    assert len(ict_names) == 53
    r = automap(ict_names)
    assert r.chosen == "suffix_lr"
    assert len(r.matched) == 53 and r.unmatched_shapes == []
    assert r.unmatched_channels == ["tongueOut"]
    assert len(ARKIT_NAMES) - len(r.unmatched_channels) == 51
    for side in ("_L", "_R"):
        assert r.matched[f"browInnerUp{side}"] == ["browInnerUp"]
        assert r.matched[f"cheekPuff{side}"] == ["cheekPuff"]
    # Both split shapes really move with the single channel.
    w = np.zeros((1, 52), np.float32)
    w[0, ARKIT_INDEX["browInnerUp"]] = 0.6
    out = apply_profile(FaceMotion.from_arrays(w), r.profile).shapes
    assert out["browInnerUp_L"][0] == pytest.approx(0.6) and out["browInnerUp_R"][0] == pytest.approx(0.6)
    assert set(out) == set(ict_names)


def test_name_normalisation_alone_finds_the_same_ict_mapping(ict_names):
    auto = build_auto_profile(ict_names)
    assert len(auto.shapes) == 53 and len(auto.channels_used()) == 51
    assert auto.matched_sources() == automap(ict_names).profile.matched_sources()


@pytest.mark.parametrize("prefix", ["", "blendShape1.", "Body:"])
def test_rocketbox_maps_all_52(prefix):
    names = [prefix + n for n in rocketbox_names()] + ["AA_VI_00_Sil", "AU_12_LipCornerPuller"]
    r = automap(names)
    assert r.chosen == "rocketbox"
    assert r.unmatched_channels == [] and len(r.matched) == 52
    assert r.matched[prefix + "AK_25_JawOpen"] == ["jawOpen"]
    assert r.matched[prefix + "AK_33_MouthLeft"] == ["mouthLeft"]
    assert r.unmatched_shapes == ["AA_VI_00_Sil", "AU_12_LipCornerPuller"]


def test_exact_arkit_names_map_all_52_even_with_extra_visemes():
    names = list(ARKIT_NAMES) + ["viseme_aa", "viseme_O", "mouthOpen"]
    r = automap(names)
    assert r.chosen == "arkit" and len(r.matched) == 52 and r.unmatched_channels == []
    assert all(r.matched[n] == [n] for n in ARKIT_NAMES)
    assert r.unmatched_shapes == ["viseme_aa", "viseme_O", "mouthOpen"]


def test_vrm_list_picks_the_vrm_preset():
    r = automap(VRM0)
    assert r.chosen == "vrm"
    assert set(r.matched) == set(VRM0) - {"Neutral"} and r.unmatched_shapes == ["Neutral"]
    assert "jawOpen" in r.matched["A"] and "eyeBlinkLeft" in r.matched["Blink_L"]


def test_oculus_visemes_only_rig_picks_the_viseme_preset():
    names = ["viseme_" + v for v in ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I",
                                     "O", "U")]
    assert automap(names).chosen == "oculus_visemes"


def test_other_spellings_are_normalised():
    names = ["EyeBlinkLeft", "eye_blink_right", "jaw-open", "MouthSmile.L", "mouthSmile_R", "BrowInnerUp",
             "cheekPuff_L", "cheekPuff_R", "mouthFrown", "Mouth_Open_Extra"]
    r = automap(names)
    assert r.chosen == "auto"
    m = r.matched
    assert m["EyeBlinkLeft"] == ["eyeBlinkLeft"] and m["eye_blink_right"] == ["eyeBlinkRight"]
    assert m["jaw-open"] == ["jawOpen"] and m["MouthSmile.L"] == ["mouthSmileLeft"]
    assert m["cheekPuff_L"] == m["cheekPuff_R"] == ["cheekPuff"]
    assert m["mouthFrown"] == ["mouthFrownLeft", "mouthFrownRight"]  # merged rig shape takes the mean
    assert r.unmatched_shapes == ["Mouth_Open_Extra"]
    w = np.zeros((1, 52), np.float32)
    w[0, ARKIT_INDEX["mouthFrownLeft"]] = 0.8
    assert apply_profile(FaceMotion.from_arrays(w), r.profile).shapes["mouthFrown"][0] == pytest.approx(0.4)


def test_no_match_and_duplicates():
    r = automap(["Body", "Teeth", "", "Body"])
    assert r.matched == {} and r.unmatched_shapes == ["Body", "Teeth"]
    assert len(r.unmatched_channels) == 52


def test_bones_are_found_and_renamed(ict_names):
    r = automap(ict_names, bone_names=["root", "spine", "mixamorig:Neck", "mixamorig:Head", "jaw_master"])
    assert r.bones_template == "bones_head_neck_jaw"
    # jaw policy: ICT's jawOpen shape key opens the mouth, so the jaw bone is found but not driven
    assert set(r.profile.bone_names) == {"mixamorig:Head", "mixamorig:Neck"}
    assert r.bone_roles == {"head": "mixamorig:Head", "neck": "mixamorig:Neck"}
    assert list(r.skipped_bones) == ["jaw_master"] and "jawOpen" in r.skipped_bones["jaw_master"]
    assert "Bones found but not driven" in r.format_report()
    only_head = automap(ict_names, bone_names=["Head"])
    assert only_head.bones_template == "bones_head_jaw" and only_head.profile.bone_names == ["Head"]
    m = FaceMotion.from_arrays(np.zeros((2, 52)), np.array([[0.1, 0.2, 0.3, 0, 0, 0]] * 2))
    np.testing.assert_allclose(apply_profile(m, only_head.profile).bones["Head"][0], [0.1, 0.2, 0.3], atol=1e-6)
    assert automap(ict_names, bone_names=["spine"]).profile.bones == ()


def test_result_profile_serialises_for_editing(ict_names, tmp_path: Path):
    r = automap(ict_names, bone_names=["head", "jaw"])
    p = r.profile.save(tmp_path / "ict.toml")
    doc = tomllib.loads(p.read_text())
    assert doc["shapes"]["browInnerUp_L"] == "browInnerUp"
    again = load_profile(p)
    assert again == r.profile
    m = FaceMotion.from_arrays(np.random.default_rng(0).random((5, 52)))
    a, b = apply_profile(m, again), apply_profile(m, r.profile)
    assert all(np.array_equal(a.shapes[k], b.shapes[k]) for k in a.shapes)
    d = r.to_dict()
    assert d["chosen"] == "suffix_lr" and d["unmatched_channels"] == ["tongueOut"]
    assert Profile.from_dict(d["profile"]) == r.profile
    text = r.format_report()
    assert "Chosen profile: suffix_lr" in text and "browInnerUp_L" in text and "tongueOut" in text


def test_directional_channels_are_never_merged():
    r = automap(["Jaw", "Mouth", "jawOpen"])
    assert r.matched == {"jawOpen": ["jawOpen"]}
