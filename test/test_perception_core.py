"""The ROS-free perception core on analytic synthetic scenes (exact ground truth): table, clusters,
target selection, normals, bad input -> typed errors, calibration files, camera models, fusion."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml

from dex_perception import synthetic as syn
from dex_perception.calibration import (
    Extrinsics,
    extrinsics_from_dict,
    extrinsics_from_transform,
    extrinsics_to_dict,
    load_extrinsics,
    matrix_to_quat_xyzw,
    quat_xyzw_to_matrix,
)
from dex_perception.camera import CameraModel, backproject, decode_color, decode_depth, depth_to_metres, distort
from dex_perception.config import config_from_dict, default_config, load_config
from dex_perception.errors import (
    BadPromptError,
    CalibrationError,
    CameraInfoError,
    ConfigError,
    EmptyDepthError,
    EncodingError,
    ImageError,
    NoObjectError,
    NoTableError,
    NothingInWorkspaceError,
    PerceptionError,
    SizeMismatchError,
    UnsupportedDistortionError,
)
from dex_perception.fusion import DepthFusion, fuse_depth
from dex_perception.pipeline import Perception
from dex_perception.prompt import parse_prompt

VIEW = syn.DefaultView(width=320, height=240)
SCENE = syn.SyntheticScene((
    syn.Primitive("box", (0.12, 0.50, 0.05), (0.04, 0.05, 0.05), 0.3),
    syn.Primitive("cylinder", (-0.15, 0.55, 0.06), (0.035, 0.06, 0.0)),
    syn.Primitive("sphere", (0.02, 0.72, 0.04), (0.04, 0.0, 0.0)),
    syn.Primitive("box", (0.25, 0.33, 0.02), (0.02, 0.03, 0.02), 1.0),
))


@pytest.fixture(scope="module")
def frame():
    return syn.render(SCENE, VIEW.camera(), VIEW.base_T_camera())


@pytest.fixture(scope="module")
def perception(frame):
    return Perception(default_config(), frame.base_T_camera)


def gt_mask(frame, obj: int) -> np.ndarray:
    return frame.ids == 2 + obj


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))


def match(result, frame) -> int:
    """Ground-truth object the selected mask overlaps most."""
    ids = frame.ids[result.mask]
    ids = ids[ids >= 2]
    return int(np.bincount(ids).argmax()) - 2


def test_table_clusters_and_iou(perception, frame):
    analysis = perception.analyse(frame.depth, frame.camera, frame.rgb)
    assert abs(analysis.table.tilt_deg()) < 0.5 and abs(analysis.table.offset) < 1e-3  # plane z = 0
    assert len(analysis.clusters) == len(SCENE.objects)
    sizes = [c.size for c in analysis.clusters]
    assert sizes == sorted(sizes, reverse=True)
    labels = analysis.label_image()
    for k, c in enumerate(analysis.clusters):
        mine = labels == k
        obj = int(np.bincount(frame.ids[mine][frame.ids[mine] >= 2]).argmax()) - 2
        assert iou(mine, gt_mask(frame, obj)) > 0.85, (k, obj)
        u0, v0, u1, v1 = c.pixel_box
        vv, uu = np.nonzero(mine)
        assert (u0, v0, u1, v1) == (uu.min(), vv.min(), uu.max(), vv.max())
    poly = analysis.table.polygon()
    assert poly.shape[0] >= 3 and np.allclose(poly[:, 2], 0.0, atol=1e-3)


def test_object_cloud_normals_against_ground_truth(perception, frame):
    res = perception.process(frame.depth, frame.camera, frame.rgb, "largest")
    mm = perception.process(np.rint(np.nan_to_num(frame.depth) * 1000).astype(np.uint16), frame.camera, None, "largest")
    assert abs(mm.mask.sum() - res.mask.sum()) < 0.05 * res.mask.sum()  # 16UC1 millimetres, same object
    cfg = perception.config
    assert 50 <= res.points.shape[0] <= cfg.max_points
    assert res.points.dtype == np.float32 and res.normals.shape == res.points.shape
    assert np.allclose(np.linalg.norm(res.normals, axis=1), 1.0, atol=1e-4)
    # ground-truth normal of the nearest ground-truth surface pixel
    gt = gt_mask(frame, match(res, frame))
    v, u = np.nonzero(gt)
    z = frame.depth[v, u]
    rays = frame.camera.rays()[v, u]
    pts = np.column_stack([rays * z[:, None], z]) @ frame.base_T_camera[:3, :3].T + frame.base_T_camera[:3, 3]
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(pts).query(res.points)
    assert np.median(dist) < 0.003
    cos = np.einsum("ij,ij->i", res.normals, frame.normals[v[idx], u[idx]])
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert np.median(angle) < 5.0 and np.mean(angle < 30) > 0.85
    assert np.mean(cos < 0) < 0.02  # oriented outward (towards the camera)
    assert res.timings["total"] > 0 and {"backproject", "table", "cluster", "object_cloud"} <= set(res.timings)


def test_centroid_orientation_points_outward(frame):
    per = Perception(replace(default_config(), normal_orientation="centroid"), frame.base_T_camera)
    res = per.process(frame.depth, frame.camera, None, "point 0.02 0.72 0.04")  # the sphere
    centre = np.array([0.02, 0.72, 0.04])
    radial = (res.points - centre) / np.linalg.norm(res.points - centre, axis=1, keepdims=True)
    assert np.median(np.einsum("ij,ij->i", radial, res.normals)) > 0.98


def test_prompts_select_the_right_object(perception, frame):
    analysis = perception.analyse(frame.depth, frame.camera, frame.rgb)
    for obj, prim in enumerate(SCENE.objects):
        top = np.array(prim.center) + [0, 0, prim.size[2] if prim.kind == "box" else prim.size[0]]
        res = perception.select(analysis, f"point {top[0]} {top[1]} {prim.center[2]}")
        assert match(res, frame) == obj
        v, u = np.argwhere(gt_mask(frame, obj)).mean(axis=0)
        res = perception.select(analysis, f"pixel {u} {v}")
        assert match(res, frame) == obj
        # colour pixels at twice the resolution map onto the depth grid
    big_rgb = np.repeat(np.repeat(frame.rgb, 2, axis=0), 2, axis=1)
    analysis2 = perception.analyse(frame.depth, frame.camera, big_rgb)
    v, u = np.argwhere(gt_mask(frame, 2)).mean(axis=0)
    assert match(perception.select(analysis2, f"pixel {2 * u + 0.5} {2 * v + 0.5}"), frame) == 2
    # largest / index / nearest
    sizes = [np.count_nonzero(gt_mask(frame, k)) for k in range(len(SCENE.objects))]
    assert match(perception.select(analysis, "largest"), frame) == int(np.argmax(sizes))
    assert match(perception.select(analysis, "index 1"), frame) == int(np.argsort(sizes)[::-1][1])
    dist = [np.hypot(*p.center[:2]) for p in SCENE.objects]  # reference point = base origin
    assert match(perception.select(analysis, "nearest"), frame) == int(np.argmin(dist))
    assert match(perception.select(analysis, ""), frame) == int(np.argmin(dist))  # default = nearest
    for bad in ("index 4", "point 0.5 0.9 0.1", "pixel 0 0", "pixel 400 10", "bogus", "point 1 2"):
        with pytest.raises(BadPromptError):
            perception.select(analysis, bad)


def test_prompt_grammar():
    assert parse_prompt("").kind == "default" and parse_prompt("  DEFAULT ").kind == "default"
    assert parse_prompt("Index 3").index == 3
    assert parse_prompt("point 0.1, -0.2, 3e-2").point == (0.1, -0.2, 0.03)
    assert parse_prompt("pixel 10 20.5").pixel == (10.0, 20.5)
    for bad in ("index -1", "index 1.5", "largest 2", "point 1 2 nan", "pixel 1", "mug", "point a b c"):
        with pytest.raises(BadPromptError):
            parse_prompt(bad)


def test_bad_input_raises_typed_errors(perception, frame):
    cam = frame.camera
    with pytest.raises(EmptyDepthError):
        perception.analyse(np.full_like(frame.depth, np.nan), cam)
    with pytest.raises(EmptyDepthError):
        perception.analyse(np.zeros_like(frame.depth), cam)
    with pytest.raises(SizeMismatchError):
        perception.analyse(frame.depth[:100], cam)
    with pytest.raises(SizeMismatchError):
        perception.analyse(frame.depth, cam, np.zeros((10, 50, 3), np.uint8))
    with pytest.raises(ImageError):
        perception.analyse(np.zeros((0, 0), np.float32), cam)
    with pytest.raises(NothingInWorkspaceError):  # everything 2.4 m away: beyond the workspace
        perception.analyse(np.full_like(frame.depth, 2.4), cam)
    with pytest.raises(NoTableError):  # a wall facing the camera: points in the workspace, no horizontal plane
        perception.analyse(np.full_like(frame.depth, 1.3), cam)
    empty = syn.render(syn.SyntheticScene(), cam, frame.base_T_camera)
    with pytest.raises(NoObjectError) as info:
        perception.analyse(empty.depth, cam)
    assert info.value.status == "nothing_in_workspace"
    tilted = np.eye(4)
    tilted[:3, :3] = quat_xyzw_to_matrix(np.array([np.sin(0.3), 0, 0, np.cos(0.3)]))  # 34 deg about x
    with pytest.raises(NoTableError):
        Perception(default_config(), tilted @ frame.base_T_camera).analyse(frame.depth, cam)
    # every typed error has a status the node can report
    for exc in (EmptyDepthError, SizeMismatchError, NoTableError, NothingInWorkspaceError, EncodingError,
                CameraInfoError, UnsupportedDistortionError, BadPromptError):
        assert issubclass(exc, PerceptionError) and exc.status not in ("", "error")


def test_table_not_confused_with_a_large_box_top(frame):
    """A wide flat box whose top holds more workspace points than the visible table: the table is
    still z = 0 (RANSAC's best plane is the box top; it is rejected because points lie below it)."""
    scene = syn.SyntheticScene((syn.Primitive("box", (0.0, 0.62, 0.05), (0.42, 0.33, 0.05)),
                                syn.Primitive("sphere", (-0.2, 0.6, 0.14), (0.04, 0.0, 0.0))))
    f = syn.render(scene, frame.camera, frame.base_T_camera)
    per = Perception(default_config(), frame.base_T_camera)
    analysis = per.analyse(f.depth, f.camera)
    z = analysis.workspace_points[:, 2]
    assert np.count_nonzero(np.abs(z - 0.10) < 0.003) > 3 * np.count_nonzero(np.abs(z) < 0.003)
    assert abs(analysis.table.offset) < 2e-3 and analysis.table.tilt_deg() < 0.5


def test_depth_encodings_and_decoding():
    depth_m = np.array([[0.0, 0.5, 1.25], [np.nan, 2.0, np.inf]], np.float32)
    mm = np.nan_to_num(depth_m * 1000, nan=0, posinf=0).astype(np.uint16)
    a = decode_depth(mm.tobytes(), "16UC1", 3, 2, 6)
    b = decode_depth(depth_m.tobytes(), "32FC1", 3, 2, 12)
    c = decode_depth(mm.astype(">u2").tobytes(), "mono16", 3, 2, 6, is_bigendian=True)
    padded = np.zeros((2, 16), np.uint8)
    padded[:, :12] = depth_m.view(np.uint8).reshape(2, 12)
    d = decode_depth(padded.tobytes(), "32FC1", 3, 2, 16)  # row padding (step > width * 4)
    for out in (a, b, c, d):
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, [[np.nan, 0.5, 1.25], [np.nan, 2.0, np.nan]])
    np.testing.assert_allclose(depth_to_metres(mm), a)  # integer arrays are millimetres
    with pytest.raises(EncodingError):
        decode_depth(mm.tobytes(), "rgb8", 3, 2, 9)
    with pytest.raises(ImageError):
        decode_depth(mm.tobytes()[:-1], "16UC1", 3, 2, 6)
    with pytest.raises(ImageError):
        decode_depth(mm.tobytes(), "16UC1", 3, 2, 4)
    with pytest.raises(ImageError):
        decode_depth(b"", "16UC1", 100000, 100000, 200000)
    bgr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(decode_color(bgr.tobytes(), "bgr8", 3, 2, 9), bgr[:, :, ::-1])
    mono = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert decode_color(mono.tobytes(), "mono8", 3, 2, 3).shape == (2, 3, 3)


def test_camera_model_validation_and_distortion():
    k = [300.0, 0, 160, 0, 300, 120, 0, 0, 1]
    for bad in ([0.0] * 9, [float("nan")] * 9, [300.0, 0, 160, 0, -3, 120, 0, 0, 1], [1, 2, 3]):
        with pytest.raises(CameraInfoError):
            CameraModel.from_camera_info(320, 240, bad)
    with pytest.raises(CameraInfoError):
        CameraModel.from_camera_info(0, 240, k)
    with pytest.raises(UnsupportedDistortionError):
        CameraModel.from_camera_info(320, 240, k, [0.1, 0.01, 0, 0], "equidistant")
    assert CameraModel.from_camera_info(320, 240, k, [0.0] * 5, "equidistant").distortion_model == ""
    # plumb_bob / rational_polynomial: back-projected rays invert the forward model exactly
    for model, d in (("plumb_bob", [-0.2, 0.05, 0.001, -0.002, 0.01]),
                     ("rational_polynomial", [0.3, -0.1, 0.001, 0.0, 0.02, 0.5, -0.05, 0.01])):
        cam = CameraModel.from_camera_info(320, 240, k, d, model)
        rays = cam.rays().astype(np.float64)
        xd, yd = distort(rays[..., 0], rays[..., 1], d, model)
        u = xd * cam.fx + cam.cx
        v = yd * cam.fy + cam.cy
        uu, vv = np.meshgrid(np.arange(320), np.arange(240))
        assert np.max(np.hypot(u - uu, v - vv)) < 1e-3
    cam = CameraModel.from_camera_info(320, 240, k)
    pts, pix = backproject(np.full((240, 320), 1.0, np.float32), cam, 0.1, 3.0)
    assert pts.shape == (320 * 240, 3) and np.allclose(cam.project(pts[:5]), np.column_stack([pix[:5] % 320, pix[:5] // 320]), atol=1e-3)


def test_calibration_layouts(tmp_path, frame):
    ext = Extrinsics(frame.base_T_camera, "base_link", "camera_color_optical_frame")
    flat = extrinsics_to_dict(ext)
    np.testing.assert_allclose(extrinsics_from_dict(flat).base_T_camera, frame.base_T_camera, atol=1e-9)
    q = flat["rotation"]
    t = flat["translation"]
    ros2 = {"parameters": {"calibration_type": "eye_on_base", "robot_base_frame": "base_link",
                           "robot_effector_frame": "tool0", "tracking_base_frame": "camera_color_optical_frame",
                           "tracking_marker_frame": "marker", "freehand_robot_movement": False},
            "transform": {"translation": t, "rotation": q}}
    ros1 = {"parameters": {"eye_on_hand": False, "robot_base_frame": "base_link",
                           "tracking_base_frame": "camera_color_optical_frame"},
            "transformation": {"x": t["x"], "y": t["y"], "z": t["z"], "qx": q["x"], "qy": q["y"], "qz": q["z"],
                               "qw": q["w"]}}
    for doc in (ros2, ros1):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(doc))
        got = load_extrinsics(path)
        np.testing.assert_allclose(got.base_T_camera, frame.base_T_camera, atol=1e-9)
        assert got.camera_frame == "camera_color_optical_frame"
    inverse = dict(flat, parent_frame="camera_color_optical_frame", child_frame="base_link")
    inv_t = -frame.base_T_camera[:3, :3].T @ frame.base_T_camera[:3, 3]
    q_inv = matrix_to_quat_xyzw(frame.base_T_camera[:3, :3].T)
    inverse["translation"] = dict(zip("xyz", inv_t.tolist()))
    inverse["rotation"] = dict(zip("xyzw", q_inv.tolist()))
    np.testing.assert_allclose(extrinsics_from_dict(inverse).base_T_camera, frame.base_T_camera, atol=1e-9)
    bad_cases = [
        (dict(flat, rotation={"x": 0, "y": 0, "z": 0, "w": 2}), "rotation"),
        (dict(flat, translation={"x": 0, "y": "a", "z": 0}), "translation.y"),
        (dict(flat, parent_frame="world"), "parent_frame"),
        ({k: v for k, v in flat.items() if k != "rotation"}, "rotation"),
        (dict(ros2, parameters=dict(ros2["parameters"], calibration_type="eye_in_hand")), "parameters"),
        ([1, 2, 3], ""),
    ]
    for doc, field in bad_cases:
        with pytest.raises(CalibrationError) as info:
            extrinsics_from_dict(doc, path="calib.yaml")
        assert info.value.field == field and "calib.yaml" in str(info.value)
    with pytest.raises(CalibrationError, match="cannot read"):
        load_extrinsics(tmp_path / "missing.yaml")
    # a TF lookup (translation + ROS-ordered quaternion) gives the same pose
    tf = extrinsics_from_transform(list(t.values()), [q["x"], q["y"], q["z"], q["w"]], "base_link", "cam")
    np.testing.assert_allclose(tf.base_T_camera, frame.base_T_camera, atol=1e-9)
    with pytest.raises(CalibrationError):
        extrinsics_from_transform([0, 0, float("nan")], [0, 0, 0, 1], "base_link", "cam")


def test_config_overrides_and_validation(tmp_path):
    cfg = config_from_dict({"workspace": {"min": [-0.3, 0.3, -0.02]}, "max_points": 512, "voxel_size": 1})
    assert cfg.workspace.min == (-0.3, 0.3, -0.02) and cfg.workspace.max == default_config().workspace.max
    assert cfg.max_points == 512 and cfg.voxel_size == 1.0
    for bad in ({"voxel_size": 0}, {"max_points": 0}, {"workspace": {"min": [1, 1, 1]}}, {"default_prompt": "grab"},
                {"default_prompt": "default"}, {"normal_orientation": "up"}, {"vox_size": 0.1},
                {"min_depth": 3.0}, {"max_table_tilt_deg": 95}):
        with pytest.raises(ConfigError):
            config_from_dict(bad)
    path = tmp_path / "p.yaml"
    path.write_text("max_points: 100\nworkspace: {max: [0.4, 1.0, 0.3]}\n")
    assert load_config(path).max_points == 100
    path.write_text("max_pointz: 100\n")
    with pytest.raises(ConfigError, match="p.yaml"):
        load_config(path)


def test_fusion_averages_noise_and_needs_support():
    rng = np.random.default_rng(0)
    truth = np.full((40, 50), 0.8, np.float32)
    frames = [truth + rng.normal(0, 0.004, truth.shape).astype(np.float32) for _ in range(9)]
    frames[0][0, 0] = np.nan  # a pixel missing in few frames stays valid
    for f in frames[:6]:
        f[1, 1] = 0.0  # missing in most frames -> invalid
    fused = fuse_depth(frames, 0.5)
    assert np.isfinite(fused[0, 0]) and np.isnan(fused[1, 1])
    err_single = np.nanstd(frames[3] - truth)
    err_fused = np.nanstd(fused - truth)
    assert err_fused < 0.5 * err_single  # sqrt(9) = 3x in theory
    fusion = DepthFusion(3)
    for f in frames[:5]:
        fusion.add(f)
    assert fusion.ready and len(fusion) == 3
    np.testing.assert_allclose(fusion.fused(), fuse_depth(frames[2:5], 0.5))
    fusion.add(np.ones((10, 10), np.float32))  # another size restarts
    assert len(fusion) == 1 and not fusion.ready


def test_fused_noisy_frames_give_a_better_cloud(frame):
    """Static scene with sensor noise: fusing 8 frames reduces the cloud's distance to the surface."""
    rng = np.random.default_rng(1)
    per = Perception(default_config(), frame.base_T_camera)
    z = frame.depth

    def noisy():
        return z + rng.normal(0, 0.002, z.shape).astype(np.float32) * z ** 2

    def surface_error(depth):
        res = per.process(depth, frame.camera, None, "largest")
        obj = match(res, frame)
        v, u = np.nonzero(gt_mask(frame, obj))
        rays = frame.camera.rays()[v, u]
        zz = z[v, u]
        pts = np.column_stack([rays * zz[:, None], zz]) @ frame.base_T_camera[:3, :3].T + frame.base_T_camera[:3, 3]
        from scipy.spatial import cKDTree

        return float(np.median(cKDTree(pts).query(res.points)[0]))

    single = surface_error(noisy())
    fused = surface_error(fuse_depth([noisy() for _ in range(8)]))
    assert fused < single


def test_stamp_sync_matches_by_stamp():
    from dex_perception.sync import StampSync

    ms = 1_000_000
    sync = StampSync(queue_size=4, info_slop_ns=1 * ms, color_slop_ns=30 * ms)
    assert sync.latest() is None
    sync.add_depth(100 * ms, "d100")
    assert sync.latest() is None  # no camera info yet
    sync.add_info(100 * ms, "i100")
    sync.add_depth(200 * ms, "d200")  # its info is late
    f = sync.latest()
    assert (f.stamp_ns, f.depth, f.info, f.color) == (100 * ms, "d100", "i100", None)
    sync.add_info(int(200.5 * ms), "i200")  # within the 1 ms slop
    sync.add_color(215 * ms, "c215")
    sync.add_color(190 * ms, "c190")  # nearer to 200 ms
    f = sync.latest()
    assert (f.depth, f.info, f.color) == ("d200", "i200", "c190")
    sync.add_depth(300 * ms, "d300")
    sync.add_info(300 * ms, "i300")
    assert sync.latest().depth == "d300" and sync.latest().color is None
    # prefer a frame whose colour arrived if it is recent enough; require colour for SAM
    assert sync.latest(prefer_color_ns=150 * ms).depth == "d200"
    assert sync.latest(prefer_color_ns=50 * ms).depth == "d300"
    assert sync.latest(require_color=True).depth == "d200"
    assert [m.depth for m in sync.matched(3)] == ["d300", "d200", "d100"]
    # bounded queues: old frames fall out
    for k in range(4, 9):
        sync.add_depth(k * 100 * ms, f"d{k}00")
    assert sync.counts == (4, 3, 2)
    assert sync.latest() is None  # d500..d800 have no camera info; d100..d300 were dropped


def test_noise_is_measured_on_the_table_and_adapts_thresholds(frame):
    rng = np.random.default_rng(5)
    noisy = frame.depth + rng.normal(0, 0.008, frame.depth.shape).astype(np.float32)  # 8 mm along the rays
    adaptive = Perception(default_config(), frame.base_T_camera)
    fixed = Perception(replace(default_config(), adapt_to_noise=False), frame.base_T_camera)
    clean = adaptive.analyse(frame.depth, frame.camera)
    assert clean.table.noise_std < 1e-4  # exact depth: no noise, thresholds as configured
    assert adaptive._min_height(clean.table) == default_config().object_min_height
    a = adaptive.process(noisy, frame.camera, None, "largest")
    # rays ~45 deg off the table normal: ~0.7 of the depth noise shows as height noise
    assert 0.004 < a.table.noise_std < 0.007, a.table.noise_std
    assert adaptive.normal_radius(a.table) > default_config().normal_radius
    assert a.num_objects == len(SCENE.objects) and iou(a.mask, gt_mask(frame, match(a, frame))) > 0.8
    # the fixed 5 mm height threshold lets table noise through: extra clusters, merged objects
    b = fixed.process(noisy, frame.camera, None, "largest")
    assert b.num_objects > len(SCENE.objects) or iou(b.mask, gt_mask(frame, match(b, frame))) < 0.5
    # repeatable up to open3d's threading (its RANSAC and its hybrid normal search are not
    # bit-reproducible; CI saw normals 2.5 deg apart on ~5 % of points): the same frame gives the
    # same object pixels (a point at the height threshold may flip) and normals within a few degrees
    from scipy.spatial import cKDTree

    again = adaptive.process(noisy, frame.camera, None, "largest")
    assert np.count_nonzero(again.mask != a.mask) <= 0.01 * np.count_nonzero(a.mask)
    dist, idx = cKDTree(a.points).query(again.points)
    same = dist < 1e-9
    assert same.mean() > 0.95
    cos = np.clip(np.einsum("ij,ij->i", again.normals[same].astype(np.float64), a.normals[idx[same]]), -1.0, 1.0)
    assert np.degrees(np.arccos(cos)).max() < 10.0
    # open3d's RANSAC plane fit runs threaded: the table agrees to well under a millimetre and a degree
    assert abs(again.table.offset - a.table.offset) < 1e-3
    assert float(again.table.normal @ a.table.normal) > np.cos(np.radians(0.5))
