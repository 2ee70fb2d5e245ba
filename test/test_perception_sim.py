"""Perception on MuJoCo-rendered sim scenes (dex_sim.env.SimEnv): the sim's calibration YAML is read
by our loader, every visible object is segmented from a point prompt, and the benchmark command
runs end to end on a couple of scenes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from dex_perception import synthetic as syn  # noqa: E402
from dex_perception.calibration import load_extrinsics  # noqa: E402
from dex_perception.camera import CameraModel  # noqa: E402
from dex_perception.config import default_config  # noqa: E402
from dex_perception.pipeline import Perception  # noqa: E402

env_mod = pytest.importorskip("dex_sim.env")


def test_synthetic_default_view_matches_the_sim_camera():
    from dex_sim.scene import CameraConfig

    cam = CameraConfig()
    view = syn.DefaultView()
    assert (view.eye, view.target, view.width, view.height, view.fovy_deg) == (cam.eye, cam.target, cam.width,
                                                                               cam.height, cam.fovy)
    np.testing.assert_allclose(view.base_T_camera(), cam.world_T_optical(), atol=1e-12)
    np.testing.assert_allclose(view.camera().K, cam.intrinsics(), atol=1e-9)


def test_shipped_sim_calibration_sample_loads():
    from dex_description.paths import config_dir
    from dex_sim.scene import CameraConfig

    path = config_dir() / "calibration" / "sim_camera.yaml"
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    ext = load_extrinsics(path)
    assert (ext.base_frame, ext.camera_frame) == ("base_link", "camera_color_optical_frame")
    np.testing.assert_allclose(ext.base_T_camera, CameraConfig().world_T_optical(), atol=1e-6)


@pytest.fixture(scope="module")
def env():
    e = env_mod.SimEnv(robot="ur5e_leap", object_set="builtin/test")
    yield e
    e.close()


def test_sim_scene_every_visible_object_from_a_point_prompt(env, tmp_path):
    info = env.camera_info()
    ext = load_extrinsics(env.write_calibration(tmp_path / "sim_camera.yaml"), info.base_frame)
    np.testing.assert_allclose(ext.base_T_camera, info.world_T_optical, atol=1e-6)
    assert ext.camera_frame == info.frame_id
    camera = CameraModel.from_camera_info(info.width, info.height, info.K.ravel(), frame_id=info.frame_id)
    perception = Perception(default_config(), ext)
    checked = 0
    for seed in (1, 2):
        env.reset(seed=seed, num_objects=3)
        frame = env.render()
        seg = env.render_segmentation().ids
        analysis = perception.analyse(frame.depth, camera, frame.rgb)
        assert abs(analysis.table.offset) < 2e-3 and analysis.table.tilt_deg() < 0.5
        for k, name in enumerate(env.object_names):
            gt = (seg == env_mod.SEG_FIRST_OBJECT + k) & np.isfinite(frame.depth)
            if gt.sum() < 300:
                continue
            v, u = np.nonzero(gt)
            z = frame.depth[v, u].astype(np.float64)
            rays = camera.rays()[v, u]
            pts = np.column_stack([rays * z[:, None], z]) @ ext.base_T_camera[:3, :3].T + ext.base_T_camera[:3, 3]
            p = pts[np.argmin(np.linalg.norm(pts - pts.mean(axis=0), axis=1))]
            res = perception.select(analysis, f"point {p[0]} {p[1]} {p[2]}")
            iou = np.count_nonzero(res.mask & gt) / np.count_nonzero(res.mask | gt)
            assert iou > 0.8, (seed, name, iou)
            # the object's pose is ground truth: its cloud lies on it
            pose = env.object_poses()[name]
            assert np.linalg.norm(res.points.mean(axis=0) - pts.mean(axis=0)) < 0.02, (name, pose[:3, 3])
            facing = np.einsum("ij,ij->i", res.normals, ext.camera_position - res.points) > 0
            assert facing.mean() > 0.97
            checked += 1
    assert checked >= 3


def test_benchmark_command_runs(tmp_path):
    from dex_perception import bench

    out = tmp_path / "perception.json"
    assert bench.main(["--robots", "ur5e_leap", "--scenes", "3", "--images", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    (summary,) = doc["summaries"]
    assert summary["scenes"] == 3 and len(doc["rows"]["ur5e_leap"]) == 3
    for key in ("iou_median", "iou_p10", "latency_ms_p50", "latency_ms_p95", "normal_err_deg_median"):
        assert summary[key] is not None, key
    assert 0.0 <= summary["iou_p10"] <= summary["iou_median"] <= 1.0
    assert "| ur5e_leap (640x480) | 3 |" in out.with_suffix(".md").read_text()
    assert (tmp_path / "perception_ur5e_leap_01.png").is_file()
    assert (tmp_path / "calibration_ur5e_leap.yaml").is_file()


def test_benchmark_on_an_object_set_directory(tmp_path, monkeypatch):
    """``--objects DIR``: a set in dex_sim's objects.yaml format that no test has seen (made here)."""
    import trimesh
    import yaml

    from dex_perception import bench

    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "my_objects"
    (root / "meshes").mkdir(parents=True)
    capsule = trimesh.creation.capsule(height=0.08, radius=0.025)
    capsule.apply_translation([0, 0, -capsule.bounds[0][2]])
    capsule.export(root / "meshes" / "capsule.obj")
    box = trimesh.creation.box([0.05, 0.08, 0.03])
    box.apply_translation([0, 0, 0.015])
    box.export(root / "meshes" / "flat_box.obj")
    (root / "objects.yaml").write_text(yaml.safe_dump({"objects": [
        {"name": "capsule_x", "mesh": "meshes/capsule.obj", "category": "capsule", "mass_kg": 0.1},
        {"name": "flat_box_x", "mesh": "meshes/flat_box.obj", "category": "box", "mass_kg": 0.1}]}))
    out = tmp_path / "out" / "perception.json"
    assert bench.main(["--objects", str(root), "--robots", "ur5e_leap", "--scenes", "2", "--max-objects", "2",
                       "--images", "0", "--worst", "0", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]["ur5e_leap"]
    assert len(rows) == 2 and {r["target"] for r in rows} <= {"capsule_x", "flat_box_x"}
    assert doc["summaries"][0]["objects"] == str(root) and doc["summaries"][0]["iou_median"] > 0.8
