"""Mapping profiles: shipped presets, validation errors, serialisation, apply_profile."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from rig_mapping import ARKIT_INDEX, ARKIT_NAMES, FaceMotion
from rig_mapping.profile import (
    Profile,
    ProfileError,
    apply_profile,
    list_presets,
    load_profile,
    presets_dir,
)

OCULUS = ["viseme_sil", "viseme_PP", "viseme_FF", "viseme_TH", "viseme_DD", "viseme_kk", "viseme_CH",
          "viseme_SS", "viseme_nn", "viseme_RR", "viseme_aa", "viseme_E", "viseme_I", "viseme_O", "viseme_U"]
VRM0 = ["A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R", "Joy", "Angry", "Sorrow", "Fun", "Surprised"]


def pose(**channels: float) -> FaceMotion:
    w = np.zeros((1, 52), np.float32)
    for k, v in channels.items():
        w[0, ARKIT_INDEX[k]] = v
    return FaceMotion.from_arrays(w)


def reference_apply(motion: FaceMotion, profile: Profile) -> dict[str, np.ndarray]:
    """Slow per-target evaluation written straight from the schema, to check the vectorised path."""
    out = {}
    for s in profile.shapes:
        terms = np.stack([motion.channel(c).astype(np.float64) * w for c, w in s.sources], axis=1)
        comb = {"sum": terms.sum(axis=1), "max": terms.max(axis=1), "min": terms.min(axis=1)}[s.combine]
        v = s.offset + s.gain * comb
        out[s.name] = np.clip(v, *s.clamp) if s.clamp else v
    return out


# -- shipped presets -----------------------------------------------------------------------------------

def test_presets_ship_inside_the_package():
    assert presets_dir().parent.name == "rig_mapping"
    assert {"arkit", "suffix_lr", "rocketbox", "oculus_visemes", "vrm"} <= set(list_presets())


def test_arkit_and_suffix_lr_presets():
    ark = load_profile("arkit")
    assert ark.shape_names == list(ARKIT_NAMES)
    assert all(s.sources == ((s.name, 1.0),) for s in ark.shapes)
    lr = load_profile("suffix_lr")
    src = lr.matched_sources()
    for side in ("_L", "_R"):
        assert src[f"browInnerUp{side}"] == ["browInnerUp"] and src[f"cheekPuff{side}"] == ["cheekPuff"]
    assert src["eyeBlink_L"] == ["eyeBlinkLeft"] and src["mouthLeft"] == ["mouthLeft"]
    assert lr.channels_used() == set(ARKIT_NAMES) and len(lr.shapes) == 54


def test_rocketbox_numbering_is_alphabetical_and_names_match_their_sources():
    rb = load_profile("rocketbox")
    assert len(rb.shapes) == 52
    for i, (target, ch) in enumerate(zip(rb.shape_names, sorted(ARKIT_NAMES), strict=True), 1):
        assert target == f"AK_{i:02d}_{ch[0].upper()}{ch[1:]}"
        assert rb.matched_sources()[target] == [ch]
    # Spot checks against published Rocketbox shape names.
    for name in ("AK_01_BrowDownLeft", "AK_06_CheekPuff", "AK_25_JawOpen", "AK_33_MouthLeft", "AK_52_TongueOut"):
        assert name in rb.shape_names


def test_viseme_and_vrm_presets_have_the_standard_names():
    assert load_profile("oculus_visemes").shape_names == OCULUS
    assert VRM0 <= load_profile("vrm").shape_names
    assert {"aa", "ih", "ou", "ee", "oh", "blink", "blinkLeft", "happy", "relaxed"} <= set(load_profile("vrm1").shape_names)


@pytest.mark.parametrize("name", ["arkit", "suffix_lr", "rocketbox", "oculus_visemes", "vrm", "vrm1"])
def test_vectorised_apply_matches_the_schema_for_every_preset(name):
    rng = np.random.default_rng(5)
    m = FaceMotion.from_arrays(rng.random((40, 52)))
    prof = load_profile(name)
    got = apply_profile(m, prof)
    want = reference_apply(m, prof)
    assert list(got.shapes) == prof.shape_names and got.n_frames == 40 and got.fps == 30
    for k, v in want.items():
        assert got.shapes[k].dtype == np.float32 and got.shapes[k].shape == (40,)
        np.testing.assert_allclose(got.shapes[k], v, atol=1e-5, err_msg=k)


@pytest.mark.parametrize(
    ("channels", "winner"),
    [
        ({"jawOpen": 0.9}, "viseme_aa"),
        ({"mouthPucker": 0.9}, "viseme_U"),
        ({"mouthFunnel": 0.9, "jawOpen": 0.3}, "viseme_O"),
        ({"mouthClose": 0.8, "mouthPressLeft": 0.6, "mouthPressRight": 0.6}, "viseme_PP"),
        ({"mouthRollLower": 0.9}, "viseme_FF"),
        ({"tongueOut": 0.8, "jawOpen": 0.2}, "viseme_TH"),
        ({"mouthStretchLeft": 0.8, "mouthStretchRight": 0.8, "jawOpen": 0.4}, "viseme_E"),
        ({}, "viseme_sil"),
    ],
)
def test_visemes_follow_the_mouth_shape(channels, winner):
    out = apply_profile(pose(**channels), load_profile("oculus_visemes")).shapes
    best = max(out, key=lambda k: out[k][0])
    assert best == winner, {k: round(float(v[0]), 2) for k, v in out.items()}
    if not channels:
        assert out["viseme_sil"][0] == 1 and sum(float(v[0]) for v in out.values()) == 1


def test_vrm_blinks_never_close_an_eye_twice():
    prof = load_profile("vrm")
    both = apply_profile(pose(eyeBlinkLeft=1, eyeBlinkRight=1), prof).shapes
    assert (both["Blink"][0], both["Blink_L"][0], both["Blink_R"][0]) == (1, 0, 0)
    wink = apply_profile(pose(eyeBlinkLeft=1, eyeBlinkRight=0.25), prof).shapes
    assert wink["Blink"][0] == 0.25 and wink["Blink_L"][0] == 0.75 and wink["Blink_R"][0] == 0
    smile = apply_profile(pose(mouthSmileLeft=1, mouthSmileRight=1), prof).shapes
    assert smile["Fun"][0] == pytest.approx(0.6) and smile["Angry"][0] == 0


def test_bone_targets_degrees_in_radians_out():
    m = FaceMotion.from_arrays(np.zeros((3, 52)), np.array([[0.2, -0.1, 0.05, 0, 0, 0]] * 3))
    w = m.weights.copy()
    w[:, ARKIT_INDEX["jawOpen"]] = [0.0, 0.5, 1.0]
    m = m.replace(weights=w)
    one = apply_profile(m, load_profile("bones_head_jaw"))
    np.testing.assert_allclose(one.bones["head"], np.tile([0.2, -0.1, 0.05], (3, 1)), atol=1e-6)
    np.testing.assert_allclose(one.bones["jaw"][:, 0], np.radians([0, 11, 22]), atol=1e-6)
    assert one.rotation_modes == {"head": "XYZ", "jaw": "XYZ"} and one.bones["jaw"].shape == (3, 3)
    split = apply_profile(m, load_profile("bones_head_neck_jaw"))
    np.testing.assert_allclose(split.bones["head"] + split.bones["neck"], one.bones["head"], atol=1e-6)
    wide = Profile.from_dict({"bones": {"jaw": {"x": {"sources": {"jawOpen": 1}, "gain": 90, "clamp": [0, 30]}}}})
    assert apply_profile(m, wide).bones["jaw"][2, 0] == pytest.approx(np.radians(30))


# -- validation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"shapes": {"Smile": {"sources": {"mouthSmileLft": 1}}}}, r"shapes\.Smile.*mouthSmileLft.*mouthSmileLeft"),
        ({"shapes": {"Smile": {"sources": {"mouthSmileLeft": 1}, "gian": 2}}}, r"shapes\.Smile.*'gian'.*'gain'"),
        ({"shapes": {"Smile": {"sources": {"mouthSmileLeft": "x"}}}}, r"shapes\.Smile\.mouthSmileLeft.*number"),
        ({"shapes": {"Smile": {"sources": {}}}}, r"shapes\.Smile.*at least one"),
        ({"shapes": {"Smile": {"gain": 2}}}, r"shapes\.Smile.*sources"),
        ({"shapes": {"Smile": {"sources": "jawOpen", "clamp": [1, 0]}}}, r"shapes\.Smile\.clamp"),
        ({"shapes": {"Smile": {"sources": "jawOpen", "combine": "avg"}}}, r"shapes\.Smile.*combine"),
        ({"shapes": {"Smile": 3}}, r"shapes\.Smile"),
        ({"bones": {"jaw": {"rotation_mode": "XYZ"}}}, r"bones\.jaw.*no axis"),
        ({"bones": {"jaw": {"x": {"sources": {"x": 1}}}}}, r"bones\.jaw\.x.*'x'"),
        ({"bones": {"jaw": {"x": {"sources": {"jawOpen": 1}}, "rotation_mode": "QUAT"}}}, r"bones\.jaw.*rotation_mode"),
        ({"shapes": {}}, "maps nothing"),
        ({"format": "other", "shapes": {"a": "jawOpen"}}, "format"),
        ({"version": 9, "shapes": {"a": "jawOpen"}}, "version"),
        ({"shapes": {"a": "jawOpen"}, "extra": 1}, "top level.*'extra'"),
    ],
)
def test_invalid_profiles_name_the_bad_entry(doc, message):
    with pytest.raises(ProfileError, match=message):
        Profile.from_dict(doc, source="my.toml")


def test_bad_files_and_unknown_presets(tmp_path: Path):
    p = tmp_path / "broken.toml"
    p.write_text("[shapes\njawOpen = 1")
    with pytest.raises(ProfileError, match="broken.toml.*TOML"):
        load_profile(p)
    with pytest.raises(ProfileError, match="no preset named 'arkitt'.*arkit"):
        load_profile("arkitt")
    with pytest.raises(FileNotFoundError):
        load_profile(tmp_path / "missing.toml")


# -- serialisation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["arkit", "suffix_lr", "rocketbox", "oculus_visemes", "vrm", "bones_head_neck_jaw"])
def test_profiles_round_trip_through_toml_and_json(name):
    prof = load_profile(name)
    assert Profile.from_dict(tomllib.loads(prof.to_toml())) == prof
    assert Profile.from_dict(json.loads(prof.to_json())) == prof


def test_save_and_reload_user_profile(tmp_path: Path):
    odd = Profile.from_dict({
        "name": "odd names",
        "shapes": {"blendShape1.Mouth Open": {"sources": {"jawOpen": 0.8, "mouthFunnel": 0.2}, "clamp": False},
                   'quote"d': "tongueOut"},
        "bones": {"mixamorig:Head": {"y": {"sources": {"yaw": 1.0}, "gain": 0.5}}},
    })
    for suffix in (".toml", ".json"):
        p = odd.save(tmp_path / f"rig{suffix}")
        assert load_profile(p) == odd
        with pytest.raises(FileExistsError, match="--overwrite"):
            odd.save(p)
        odd.save(p, overwrite=True)
    with pytest.raises(ProfileError, match="toml or .json"):
        odd.save(tmp_path / "rig.yaml")
    with pytest.raises(FileNotFoundError, match="create it first"):
        odd.save(tmp_path / "no_such_folder" / "rig.toml")
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temp file left
    assert odd.shapes[0].clamp is None


def test_merged_and_restricted():
    both = load_profile("arkit").restricted(["jawOpen", "eyeBlinkLeft"]).merged(load_profile("bones_head_jaw"))
    assert both.shape_names == ["eyeBlinkLeft", "jawOpen"] and both.bone_names == ["head", "jaw"]
    assert both.channels_used() == {"eyeBlinkLeft", "jawOpen", "jawLeft", "jawRight"}


def test_the_schema_example_in_the_profiles_readme_is_valid():
    import re

    text = (presets_dir() / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    prof = Profile.from_dict(tomllib.loads(example), source="README.md")
    assert prof.shape_names == ["eyeBlink_L", "Mouth Open", "Blink"] and prof.bone_names == ["jaw", "head"]
    for name in list_presets():
        assert f"`{name}`" in text, f"preset {name} is not documented in profiles/README.md"


def test_invert_profile_recovers_the_motion_it_mapped():
    """apply_profile then invert_profile: weights and head pose come back (fan-out averaged, gains undone)."""
    from rig_mapping.automap import map_rig
    from rig_mapping.profile import invert_profile

    names = ["jawOpen", "eyeBlink_L", "eyeBlink_R", "browInnerUp_L", "browInnerUp_R"]
    prof = map_rig(names, ["neck", "head", "jaw"]).profile
    rng = np.random.default_rng(2)
    w = np.zeros((8, 52), np.float32)
    for c in ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp"):
        w[:, ARKIT_INDEX[c]] = rng.uniform(0.1, 0.9, 8)
    head = np.zeros((8, 6), np.float32)
    head[:, :3] = rng.uniform(-0.2, 0.2, (8, 3))
    m = FaceMotion.from_arrays(w, head, fps=30)
    out = apply_profile(m, prof)
    back = invert_profile(out.shapes, out.bones, prof, fps=30)
    np.testing.assert_allclose(back.weights, w, atol=1e-5)
    np.testing.assert_allclose(back.head[:, :3], head[:, :3], atol=1e-5)
    assert invert_profile({}, {}, prof, fps=30).n_frames == 0
