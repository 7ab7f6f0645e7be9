"""Motion file formats: npz, Live Link Face CSV, Audio2Face JSON — round trips and malformed files."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from rig_mapping import ARKIT_INDEX, ARKIT_NAMES, FaceMotion
from rig_mapping.formats import FORMATS, FormatError, load_motion, save_motion
from rig_mapping.formats.livelink_csv import (
    LLF_HEADER,
    format_livelink_csv,
    parse_livelink_csv,
    parse_timecode,
)

# The header as documented in shared/reference/blender-and-formats.md section 4.2.
REFERENCE_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)


def sample_motion(n: int = 75, fps: float = 30.0, seed: int = 0) -> FaceMotion:
    rng = np.random.default_rng(seed)
    h = np.zeros((n, 6))
    h[:, :3] = rng.uniform(-0.6, 0.6, (n, 3))
    return FaceMotion.from_arrays(rng.random((n, 52)), h, fps=fps,
                                  meta={"seed": 7, "style": "calm", "nested": {"a": [1, 2.5]}})


def llf_text(rows: list[dict[str, str]], header: list[str] | None = None) -> str:
    """Build LLF CSV text from {column: value} rows (absent columns = 0)."""
    header = list(header or LLF_HEADER)
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for r in rows:
        out.write(",".join(str(r.get(c, "61" if c == "BlendShapeCount" else "0")) for c in header) + "\n")
    return out.getvalue()


# -- dispatch ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".npz", ".csv", ".json"])
def test_round_trip_through_load_and_save(tmp_path: Path, suffix: str):
    m = sample_motion()
    p = save_motion(m, tmp_path / f"take{suffix}")
    back = load_motion(p)
    assert back.fps == m.fps and back.n_frames == m.n_frames
    np.testing.assert_array_equal(back.weights, m.weights)  # all three are exact for float32
    np.testing.assert_allclose(back.head[:, :3], m.head[:, :3], atol=1e-7)
    if suffix != ".csv":
        assert back.meta == m.meta


def test_dispatch_table_unknown_suffix_and_overwrite_protection(tmp_path: Path):
    assert set(FORMATS) == {".npz", ".csv", ".json"}
    m = sample_motion(10)
    with pytest.raises(FormatError, match=r"\.bvh.*supported"):
        save_motion(m, tmp_path / "x.bvh")
    p = save_motion(m, tmp_path / "x.npz")
    before = p.read_bytes()
    with pytest.raises(FileExistsError, match=r"overwrite=True \(CLI: --overwrite\)"):
        save_motion(sample_motion(10, seed=5), p)
    assert p.read_bytes() == before  # untouched
    save_motion(sample_motion(10, seed=5), p, overwrite=True)
    assert not load_motion(p).allclose(m)
    with pytest.raises(FileNotFoundError):
        load_motion(tmp_path / "missing.csv")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


# -- npz ----------------------------------------------------------------------------------------------

def test_npz_is_lossless_and_reorders_named_columns(tmp_path: Path):
    m = sample_motion(40)
    p = save_motion(m, tmp_path / "m.npz")
    assert load_motion(p) == m
    z = dict(np.load(p, allow_pickle=False))
    perm = np.random.default_rng(3).permutation(52)
    z["weights"] = z["weights"][:, perm]
    z["channel_names"] = z["channel_names"][perm]
    np.savez(tmp_path / "shuffled.npz", **z)
    assert load_motion(tmp_path / "shuffled.npz") == m


def test_npz_malformed_files(tmp_path: Path):
    m = sample_motion(5)
    base = dict(np.load(save_motion(m, tmp_path / "ok.npz"), allow_pickle=False))
    np.savez(tmp_path / "nometa.npz", **{k: v for k, v in base.items() if k != "meta_json"})
    with pytest.raises(FormatError, match="meta_json") as e:
        load_motion(tmp_path / "nometa.npz")
    assert e.value.field == "meta_json"
    np.savez(tmp_path / "pickled.npz", **{**base, "meta_json": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(FormatError, match="pickle"):
        load_motion(tmp_path / "pickled.npz")
    np.savez(tmp_path / "future.npz", **{**base, "format_version": np.int64(99)})
    with pytest.raises(FormatError, match="newer"):
        load_motion(tmp_path / "future.npz")
    np.savez(tmp_path / "nan.npz", **{**base, "weights": np.full((5, 52), np.nan, np.float32)})
    with pytest.raises(FormatError, match="non-finite"):
        load_motion(tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="npz"):
        load_motion(tmp_path / "junk.npz")


# -- Live Link Face CSV ----------------------------------------------------------------------------

def test_llf_header_is_exactly_the_reference_and_jaw_mouth_columns_are_not_swapped():
    w = np.zeros((3, 52), np.float32)
    w[:, ARKIT_INDEX["jawLeft"]] = 0.7
    w[:, ARKIT_INDEX["jawRight"]] = 0.1
    w[:, ARKIT_INDEX["mouthLeft"]] = 0.25
    text = format_livelink_csv(FaceMotion.from_arrays(w, fps=60))
    assert text.splitlines()[0] == REFERENCE_HEADER
    row = next(csv.DictReader(io.StringIO(text)))
    assert float(row["JawLeft"]) == pytest.approx(0.7) and float(row["JawRight"]) == pytest.approx(0.1)
    assert float(row["MouthLeft"]) == 0.25 and float(row["MouthRight"]) == 0.0
    assert row["Timecode"] == "00:00:00:00.000" and row["BlendShapeCount"] == "61"


def test_llf_columns_are_parsed_by_name_not_position():
    m = sample_motion(70, fps=60)
    text = format_livelink_csv(m)
    rows = list(csv.reader(io.StringIO(text)))
    perm = np.random.default_rng(4).permutation(len(rows[0]))
    shuffled = "\n".join(",".join(r[i] for i in perm) for r in rows) + "\n"
    a = parse_livelink_csv(text)
    b = parse_livelink_csv(shuffled)
    assert a.allclose(b, atol=0) and a.allclose(m, atol=1e-7)


def test_llf_timecode_start_and_fps_detection():
    # 30 fps recording starting at 00:01:02:15 spanning a second boundary: detected as 30 fps.
    rows = [{"Timecode": f"00:01:{2 + (15 + i) // 30:02d}:{(15 + i) % 30:02d}.000", "JawOpen": i / 40}
            for i in range(30)]
    m = parse_livelink_csv(llf_text(rows))
    assert m.fps == 30 and m.meta["fps_detected"] is True
    assert m.meta["start_seconds"] == pytest.approx(62.5)
    np.testing.assert_allclose(m.channel("jawOpen"), np.arange(30) / 40, atol=1e-7)
    rows60 = [{"Timecode": f"00:00:{i // 60:02d}:{i % 60:02d}.000"} for i in range(90)]
    assert parse_livelink_csv(llf_text(rows60)).fps == 60
    short = [{"Timecode": f"00:00:00:{i:02d}.000"} for i in range(20)]  # under a second: app default
    assert parse_livelink_csv(llf_text(short)).fps == 60
    assert parse_livelink_csv(llf_text(short), fps=30).n_frames == 20
    with pytest.raises(FormatError, match="fps=24") as e:
        parse_livelink_csv(llf_text(rows), fps=24)
    assert e.value.line == 2 + 9  # first row whose frame field (24) is not below 24


def test_llf_irregular_timecodes_are_resampled_onto_a_uniform_grid():
    frames = [0, 1, 2, 3, 6, 7, 8.5, 10, 11, 12]  # dropped frames 4-5, a late one, a duplicate below
    rows = [{"Timecode": f"00:00:00:{f:05.2f}", "JawOpen": f / 20, "HeadYaw": f / 100} for f in frames]
    rows.insert(3, dict(rows[3]))
    m = parse_livelink_csv(llf_text(rows), fps=60)
    assert m.n_frames == 13 and m.meta["resampled"] is True
    np.testing.assert_allclose(m.channel("jawOpen"), np.arange(13) / 20, atol=1e-6)
    np.testing.assert_allclose(m.channel("yaw"), np.arange(13) / 100, atol=1e-6)


def test_llf_head_units_signs_and_mirror():
    deg = [{"Timecode": f"00:00:00:{i:02d}.000", "HeadYaw": 30, "HeadPitch": -10, "HeadRoll": 5,
            "EyeBlinkLeft": 0.9} for i in range(5)]
    m = parse_livelink_csv(llf_text(deg))
    assert m.meta["angle_unit"] == "deg"
    np.testing.assert_allclose(m.head[0, :3], np.radians([-10, 30, 5]), atol=1e-6)  # pitch, yaw, roll
    rad = [{**r, "HeadYaw": 0.5, "HeadPitch": -0.1, "HeadRoll": 0.05} for r in deg]
    m2 = parse_livelink_csv(llf_text(rad))
    assert m2.meta["angle_unit"] == "rad"
    np.testing.assert_allclose(m2.head[0, :3], [-0.1, 0.5, 0.05], atol=1e-6)
    flipped = parse_livelink_csv(llf_text(rad), head_signs=(-1, 1, 1))
    assert flipped.head[0, 0] == pytest.approx(0.1)
    assert parse_livelink_csv(llf_text(rad), angle_unit="deg").head[0, 1] == pytest.approx(np.radians(0.5))
    mirrored = parse_livelink_csv(llf_text(rad), mirror=True)
    assert mirrored.channel("eyeBlinkRight")[0] == pytest.approx(0.9) and mirrored.channel("eyeBlinkLeft")[0] == 0
    assert mirrored.head[0, 1] == pytest.approx(-0.5)
    # Written with the same signs, read back identically.
    back = parse_livelink_csv(format_livelink_csv(flipped, head_signs=(-1, 1, 1)), head_signs=(-1, 1, 1))
    np.testing.assert_allclose(back.head, flipped.head, atol=1e-7)


def test_llf_without_head_columns_reads_a_still_head():
    header = [c for c in LLF_HEADER if not c.startswith(("Head", "LeftEye", "RightEye"))]
    m = parse_livelink_csv(llf_text([{"Timecode": "00:00:00:01.000"}] * 1, header))
    assert m.n_frames == 1 and not m.head.any() and m.meta["angle_unit"] == "none"


def iphone_style_csv(frames: int, subframe: list[str], first_frame: int = 52) -> str:
    """What the app writes: 63 columns, BlendShapeCount 61, 7-digit values, a time-of-day start,
    60 fps frame numbers with a sub-frame fraction, head/eye rotation columns all 0, CRLF line ends.
    JawOpen rises linearly with time and EyeBlinkLeft falls, so a resampled file can be checked."""
    lines = [",".join(LLF_HEADER)]
    for k in range(frames):
        f = first_frame + k
        sec, ff = divmod(f, 60)
        tc = f"14:07:{45 + sec:02d}:{ff:02d}.{subframe[k % len(subframe)]}"
        vals = {"JawOpen": f"{0.5 * k / frames:.7f}", "EyeBlinkLeft": f"{1 - k / frames:.7f}",
                "MouthSmileRight": "0.0331826"}
        shapes = [vals.get(c, "0.0000000") for c in LLF_HEADER[2:54]]
        lines.append(",".join([tc, "61", *shapes] + ["0"] * 9))  # HeadYaw ... RightEyeRoll
    return "\r\n".join(lines) + "\r\n"


def test_llf_iphone_style_file_with_sub_frame_timecodes_parses():
    assert len(LLF_HEADER) == 63 and LLF_HEADER[1] == "BlendShapeCount"
    # Constant sub-frame phase: one row per 60 fps frame, no resampling, values exact.
    m = parse_livelink_csv(iphone_style_csv(90, ["517"]))
    assert m.fps == 60 and m.meta["fps_detected"] is True and m.meta["resampled"] is False
    assert m.n_frames == 90 and m.meta["start_seconds"] == pytest.approx(14 * 3600 + 7 * 60 + 45 + 52.517 / 60)
    np.testing.assert_allclose(m.channel("jawOpen"), 0.5 * np.arange(90) / 90, atol=1e-6)
    assert m.channel("mouthSmileRight")[0] == pytest.approx(0.0331826)
    assert not m.head.any() and m.meta["angle_unit"] == "rad"
    # Jittering sub-frames (the phone's frame clock against the timecode clock): put on a uniform grid.
    j = parse_livelink_csv(iphone_style_csv(90, ["517", "602", "433", "498"]))
    assert j.fps == 60 and j.meta["resampled"] is True and abs(j.n_frames - 90) <= 1
    np.testing.assert_allclose(j.channel("jawOpen")[:80], 0.5 * np.arange(80) / 90, atol=0.5 / 90)
    np.testing.assert_allclose(j.channel("eyeBlinkLeft")[:80], 1 - np.arange(80) / 90, atol=1 / 90)


def iphone_take_with_lost_tracking(lost: dict[int, int], frames: int = 240, trailing_newline: bool = True) -> str:
    """An iPhone-style 60 fps take where tracking is lost for ``{first_frame: n_frames}``: the app then
    writes rows of only ``timecode,0`` (BlendShapeCount 0). JawOpen is a slow ramp 0.1 -> 0.9, so a
    bridged gap can be checked against the straight line."""
    lines = [",".join(LLF_HEADER)]
    dead = {f for a, n in lost.items() for f in range(a, a + n)}
    for f in range(frames):
        sec, ff = divmod(f, 60)
        tc = f"09:15:{10 + sec:02d}:{ff:02d}.250"
        if f in dead:
            lines.append(f"{tc},0")
            continue
        vals = {"JawOpen": f"{0.1 + 0.8 * f / frames:.7f}", "BrowInnerUp": "0.4000000"}
        shapes = [vals.get(c, "0.0000000") for c in LLF_HEADER[2:54]]
        lines.append(",".join([tc, "61", *shapes] + ["0"] * 9))
    return "\r\n".join(lines) + ("\r\n" if trailing_newline else "")


def test_llf_tracking_lost_rows_short_gaps_are_bridged_long_gaps_ease_to_neutral_and_are_reported(tmp_path: Path):
    """Finding 10: rows of only ``timecode,0`` (tracking lost) used to refuse the whole take."""
    p = tmp_path / "take.csv"
    # 6 frames (0.12 s hole) are bridged; 90 frames (1.52 s) ease to neutral and are reported
    p.write_text(iphone_take_with_lost_tracking({30: 6, 100: 90}), newline="")
    with pytest.warns(UserWarning, match=r"tracking was lost .*1\.52 s from 1\.67 s") as rec:
        m = load_motion(p)
    assert len([w for w in rec if "tracking" in str(w.message)]) == 1
    assert m.fps == 60 and m.n_frames == 240  # the clip keeps its length (and its sync with audio)
    jaw = m.channel("jawOpen")
    ramp = 0.1 + 0.8 * np.arange(240) / 240
    np.testing.assert_allclose(jaw[:100], ramp[:100], atol=1e-6)  # bridged: the straight line
    np.testing.assert_allclose(jaw[190:], ramp[190:], atol=1e-6)
    assert np.all(m.weights[125:165] == 0) and np.all(m.head[125:165] == 0)  # neutral in the middle
    assert np.abs(np.diff(jaw)).max() < 0.1  # eased, no jump at the edges of the hole
    gaps = m.meta["tracking_gaps"]
    assert [(g["fill"], g["rows"]) for g in gaps] == [("interpolated", 6), ("neutral", 90)]
    assert gaps[0]["start"] == pytest.approx(30 / 60, abs=1e-3) and gaps[0]["seconds"] == pytest.approx(7 / 60, abs=1e-3)
    assert gaps[1]["start"] == pytest.approx(100 / 60, abs=1e-3) and gaps[1]["seconds"] == pytest.approx(91 / 60, abs=1e-3)
    # the report survives a round trip through the lossless format
    assert load_motion(save_motion(m, tmp_path / "take.npz")).meta["tracking_gaps"] == gaps


def test_llf_tracking_lost_at_the_edges_holds_or_eases_and_a_never_tracked_take_is_neutral(tmp_path: Path):
    p = tmp_path / "edges.csv"
    p.write_text(iphone_take_with_lost_tracking({0: 10, 230: 10}), newline="")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # short edge gaps are no cause for a warning
        m = load_motion(p)
    assert m.n_frames == 240 and [g["fill"] for g in m.meta["tracking_gaps"]] == ["held", "held"]
    assert m.channel("jawOpen")[0] == pytest.approx(0.1 + 0.8 * 10 / 240, abs=1e-6)  # first tracked frame
    p.write_text(iphone_take_with_lost_tracking({0: 120}), newline="")
    with pytest.warns(UserWarning, match="tracking was lost"):
        m = load_motion(p)
    assert m.meta["tracking_gaps"][0]["fill"] == "neutral" and not m.weights[:100].any()
    assert m.channel("jawOpen")[-1] == pytest.approx(0.1 + 0.8 * 239 / 240, abs=1e-6)
    p.write_text(iphone_take_with_lost_tracking({0: 240}), newline="")
    with pytest.warns(UserWarning, match="tracking was lost"):
        m = load_motion(p)
    assert m.n_frames == 240 and not m.weights.any()


def test_llf_a_take_cut_off_mid_line_drops_the_last_row_with_a_warning(tmp_path: Path):
    text = iphone_take_with_lost_tracking({}, frames=120, trailing_newline=False)
    p = tmp_path / "cut.csv"
    p.write_text(text[: len(text) - 200], newline="")  # the recording stopped while writing a row
    with pytest.warns(UserWarning, match="cut off"):
        m = load_motion(p)
    assert m.n_frames == 119


def test_llf_real_iphone_takes_all_load(livelink_dir: Path):
    """Every real Live Link Face take in ../shared loads (2 of the 7 have tracking-lost rows)."""
    takes = sorted(livelink_dir.rglob("*.csv"))
    assert len(takes) >= 7
    with_gaps = {}
    for take in takes:
        rows = [ln for ln in take.read_text().splitlines()[1:] if ln.strip()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # clamping notes and the long-gap report
            m = load_motion(take)
        assert np.isfinite(m.weights).all() and m.n_frames > 0
        first, last = (parse_timecode(r.split(",", 1)[0]) for r in (rows[0], rows[-1]))
        span = (last[0] - first[0]) * m.fps + last[1] - first[1]
        assert m.n_frames == round(span) + 1, take.name  # lost rows keep their time
        lost = sum(1 for r in rows if r.split(",")[1] == "0")
        assert sum(g["rows"] for g in m.meta["tracking_gaps"]) == lost
        if lost:
            with_gaps[take.name] = m.meta["tracking_gaps"]
    assert {"apfel.csv", "S88-001.csv"} <= set(with_gaps)
    assert all(g["fill"] == "interpolated" for g in with_gaps["apfel.csv"])  # all under 0.3 s
    long_gaps = [g for g in with_gaps["S88-001.csv"] if g["fill"] == "neutral"]
    assert [round(g["seconds"], 1) for g in long_gaps] == [4.4, 4.1, 0.9]


def good_rows(n: int = 6) -> list[dict[str, str]]:
    return [{"Timecode": f"00:00:00:{i:02d}.000", "JawOpen": "0.5"} for i in range(n)]


@pytest.mark.parametrize(
    ("mutate", "line", "message"),
    [
        (lambda t: t.replace(",MouthSmileLeft,", ",MouthSmileLeftX,", 1), 1, "MouthSmileLeft"),
        (lambda t: t.replace("00:00:00:02.000", "00:00:02.000"), 4, "timecode"),
        (lambda t: t.replace("00:00:00:03.000", "0a:00:00:03.000"), 5, "timecode"),
        (lambda t: _edit_row(t, 1, "JawOpen", "nan"), 3, "JawOpen"),
        (lambda t: _edit_row(t, 2, "CheekPuff", "abc"), 4, "CheekPuff"),
        (lambda t: _drop_field(t, 4), 6, "fields"),
        (lambda t: t.replace("00:00:00:04.000", "00:00:00:01.000"), 6, "backwards"),
        (lambda t: t.split("\n")[0] + "\n", 2, "no data"),
        (lambda t: "", 1, "empty"),
        (lambda t: t.replace("HeadPitch", "HeadPitchX", 1), 1, "HeadPitch"),
    ],
)
def test_llf_malformed_files_name_the_line(tmp_path: Path, mutate, line, message):
    p = tmp_path / "bad.csv"
    p.write_text(mutate(llf_text(good_rows())))
    with pytest.raises(FormatError, match=message) as e:
        load_motion(p)
    assert e.value.line == line
    assert f"line {line}" in str(e.value) and str(p) in str(e.value)
    assert isinstance(e.value, ValueError)


def _edit_row(text: str, row: int, col: str, value: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    rows[row + 1][rows[0].index(col)] = value
    return "\n".join(",".join(r) for r in rows) + "\n"


def _drop_field(text: str, row: int) -> str:
    lines = text.split("\n")
    lines[row + 1] = lines[row + 1].rsplit(",", 1)[0]
    return "\n".join(lines)


@pytest.mark.parametrize("fps", [24, 25, 30, 60])
@pytest.mark.parametrize("n", [2, 12, 24, 30, 61])
def test_llf_short_clips_read_back_at_their_own_rate(tmp_path: Path, fps: int, n: int):
    """A clip of a second or less never crosses a second boundary from frame 0, so readers would take the
    app default of 60 fps (half the duration of a 30 fps take); the writer starts it so they do not."""
    m = sample_motion(n, fps=fps)
    back = load_motion(save_motion(m, tmp_path / "short.csv"))
    assert back.fps == fps and back.n_frames == n and back.meta["resampled"] is False
    np.testing.assert_array_equal(back.weights, m.weights)


def test_llf_writer_warns_about_a_rate_readers_cannot_detect(tmp_path: Path):
    with pytest.warns(UserWarning, match="fps=16"):
        p = save_motion(sample_motion(40, fps=16), tmp_path / "odd.csv")
    assert load_motion(p, fps=16).n_frames == 40


def test_llf_writer_needs_a_whole_frame_rate(tmp_path: Path):
    with pytest.raises(FormatError, match="resample"):
        save_motion(sample_motion(5, fps=29.97), tmp_path / "a.csv")
    assert not (tmp_path / "a.csv").exists()


# -- Audio2Face JSON ----------------------------------------------------------------------------------

def a2f_doc(names: list[str], mat: list[list[float]], fps: float = 30.0) -> dict:
    return {"exportFps": fps, "trackPath": "/audio/take1.wav", "numPoses": len(names), "numFrames": len(mat),
            "facsNames": names, "weightMat": mat}


def test_a2f_names_in_any_case_and_order_are_mapped(tmp_path: Path):
    names = ["JawOpen", "eyeBlink_L", "mouth_smile_right", "tongueOut", "headNod"]
    mat = [[0.5, 0.25, 0.125, 1.0, 0.9], [0.0, 1.0, 0.5, 0.0, 0.1]]
    p = tmp_path / "a2f.json"
    p.write_text(json.dumps(a2f_doc(names, mat, fps=60)))
    with pytest.warns(UserWarning, match="headNod"):
        m = load_motion(p)
    assert m.fps == 60 and m.n_frames == 2
    assert m.channel("jawOpen").tolist() == [0.5, 0.0]
    assert m.channel("eyeBlinkLeft").tolist() == [0.25, 1.0]
    assert m.channel("mouthSmileRight").tolist() == [0.125, 0.5]
    assert m.channel("tongueOut").tolist() == [1.0, 0.0]
    assert m.meta["unmapped_names"] == ["headNod"] and m.meta["track_path"] == "/audio/take1.wav"
    assert m.weights[:, [ARKIT_INDEX[n] for n in ("browInnerUp", "cheekPuff")]].sum() == 0


def test_a2f_written_file_has_the_a2f_layout(tmp_path: Path):
    m = sample_motion(12)
    p = save_motion(m, tmp_path / "out.json", include_talkrig=False)
    doc = json.loads(p.read_text())
    assert doc["facsNames"] == list(ARKIT_NAMES) and doc["numPoses"] == 52 and doc["numFrames"] == 12
    assert doc["exportFps"] == 30 and len(doc["weightMat"][0]) == 52 and "talkrig" not in doc
    back = load_motion(p)
    np.testing.assert_array_equal(back.weights, m.weights)
    assert not back.head.any()


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(numFrames=3), "weightMat"),
        (lambda d: d.update(numPoses=5), "facsNames"),
        (lambda d: d.pop("facsNames"), "facsNames"),
        (lambda d: d.update(exportFps=0), "exportFps"),
        (lambda d: d.update(exportFps="30"), "exportFps"),
        (lambda d: d["weightMat"][1].pop(), "weightMat[1]"),
        (lambda d: d["weightMat"][0].__setitem__(1, float("nan")), "weightMat[0][1]"),
        (lambda d: d["weightMat"][1].__setitem__(0, "x"), "weightMat[1]"),
        (lambda d: d["facsNames"].__setitem__(1, "JawOpen"), "facsNames[1]"),
        (lambda d: d.update(facsNames=["a", "b"]), "facsNames"),
    ],
)
def test_a2f_malformed_files_name_the_field(tmp_path: Path, edit, field):
    doc = a2f_doc(["jawOpen", "mouthFunnel"], [[0.1, 0.2], [0.3, 0.4]])
    edit(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FormatError) as e:
            load_motion(p)
    assert e.value.field == field
    assert repr(field) in str(e.value)


def test_a2f_not_json(tmp_path: Path):
    p = tmp_path / "x.json"
    p.write_text("{ not json")
    with pytest.raises(FormatError, match="JSON"):
        load_motion(p)


def test_written_files_follow_the_umask_not_private_temp_permissions(tmp_path) -> None:
    """A Live Link CSV handed to a colleague or a render farm must be readable by them (not 0600)."""
    import os

    from rig_mapping import FaceMotion
    from rig_mapping.formats import save_motion

    old = os.umask(0o022)
    try:
        out = save_motion(FaceMotion.neutral(10), tmp_path / "take.csv")
    finally:
        os.umask(old)
    assert (os.stat(out).st_mode & 0o777) == 0o644


def test_a_style_value_is_a_preset_or_a_reference_clip_read_here(tmp_path, monkeypatch):
    """One rule for every command (`talkrig generate/animate`, the Blender runner): a path is read as a
    clip (a server may not see this machine's files), a name is a preset for the engine."""
    from rig_mapping.formats import style_reference

    monkeypatch.chdir(tmp_path)
    w = np.zeros((20, 52), np.float32)
    w[:, ARKIT_INDEX["jawOpen"]] = 0.5
    save_motion(FaceMotion.from_arrays(w, fps=30), tmp_path / "calm.csv")
    assert style_reference("calm.csv").weights[0, ARKIT_INDEX["jawOpen"]] == pytest.approx(0.5)
    for preset in ("happy:3", "predicted", None, ""):
        assert style_reference(preset) is None
    (tmp_path / "takes").mkdir()
    for bad, why in (("takes/", "is a folder"), ("gone.npz", "not found"), ("notes/clip.txt", "not found")):
        with pytest.raises(ValueError, match=why):
            style_reference(bad)
    (tmp_path / "clip.txt").write_text("x")
    with pytest.raises(ValueError, match="a style reference is a motion file"):
        style_reference("clip.txt")
