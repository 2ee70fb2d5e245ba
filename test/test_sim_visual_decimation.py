"""Visual-mesh decimation (robot YAML ``visual_mesh_max_faces``): collision geometry, masses and FK
are unchanged, the decimated meshes respect the budget, the rendered picture stays the same."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from dex_description.compose import Robot, compile_spec
from dex_description.config import load_robot_config
from dex_description.errors import RobotConfigError
from dex_sim.render import RGBDRenderer
from dex_sim.scene import build_scene, default_config

pytest.importorskip("fast_simplification", reason="pip install fast-simplification==0.2.0 (visual-mesh decimation)")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("mesh_cache")
    old = os.environ.get("DEXGRASP_CACHE_DIR")
    os.environ["DEXGRASP_CACHE_DIR"] = str(cache)
    try:
        cfg = load_robot_config("ur5e_leap")
        assert cfg.hand.visual_mesh_max_faces and cfg.arm.visual_mesh_max_faces
        off = dataclasses.replace(cfg, hand=dataclasses.replace(cfg.hand, visual_mesh_max_faces=None),
                                  arm=dataclasses.replace(cfg.arm, visual_mesh_max_faces=None))
        on_spec, off_spec = build_scene(Robot(cfg)), build_scene(Robot(off))
        on, off_m = compile_spec(on_spec.spec), compile_spec(off_spec.spec)
        files = sorted((cache / "meshes").glob("*"))
        yield cfg, on, off_m, files
    finally:
        if old is None:
            os.environ.pop("DEXGRASP_CACHE_DIR", None)
        else:
            os.environ["DEXGRASP_CACHE_DIR"] = old


def test_collision_geometry_masses_and_fk_unchanged(models):
    cfg, on, off, files = models
    assert files, "no decimated mesh was written to the cache"
    assert (on.ngeom, on.nbody, on.njnt, on.nmesh) == (off.ngeom, off.nbody, off.njnt, off.nmesh)
    colliding = [g for g in range(off.ngeom) if off.geom_contype[g] or off.geom_conaffinity[g]]
    assert len(colliding) > 20
    for g in colliding:
        assert on.geom_type[g] == off.geom_type[g]
        np.testing.assert_array_equal(on.geom_size[g], off.geom_size[g])
        np.testing.assert_array_equal(on.geom_pos[g], off.geom_pos[g])
        np.testing.assert_array_equal(on.geom_quat[g], off.geom_quat[g])
        mid = off.geom_dataid[g]
        if off.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH:
            a, n = off.mesh_vertadr[mid], off.mesh_vertnum[mid]
            assert on.mesh_vertnum[mid] == n
            b = on.mesh_vertadr[mid]
            np.testing.assert_array_equal(on.mesh_vert[b:b + n], off.mesh_vert[a:a + n])
    np.testing.assert_array_equal(on.body_mass, off.body_mass)
    np.testing.assert_array_equal(on.body_inertia, off.body_inertia)
    d_on, d_off = mujoco.MjData(on), mujoco.MjData(off)
    rng = np.random.default_rng(0)
    lo, hi = off.jnt_range[:, 0], off.jnt_range[:, 1]
    for _ in range(20):
        q = rng.uniform(np.maximum(lo, -3), np.minimum(hi, 3))
        d_on.qpos[:] = q
        d_off.qpos[:] = q
        mujoco.mj_kinematics(on, d_on)
        mujoco.mj_kinematics(off, d_off)
        np.testing.assert_array_equal(d_on.xpos, d_off.xpos)
        np.testing.assert_array_equal(d_on.xquat, d_off.xquat)


def test_visual_meshes_within_budget(models):
    cfg, on, off, _ = models
    budget = cfg.hand.visual_mesh_max_faces
    keep = {f"{cfg.hand.name}/{n}" for n in cfg.hand.visual_mesh_keep}
    reduced = 0
    for m in range(on.nmesh):
        name = on.mesh(m).name
        if on.mesh_facenum[m] < off.mesh_facenum[m]:
            reduced += 1
            assert on.mesh_facenum[m] <= budget * 1.25, name  # quadric decimation stops near the target
            assert name not in keep
        if name in keep:
            assert on.mesh_facenum[m] == off.mesh_facenum[m]
    assert reduced >= 6
    assert on.mesh_facenum.sum() < 0.6 * off.mesh_facenum.sum()


def test_picture_still_looks_right(models):
    cfg, on, off, _ = models
    cam = default_config().camera
    frames = []
    for model in (on, off):
        data = mujoco.MjData(model)
        mujoco.mj_resetDataKeyframe(model, data, model.key("pre_shape").id)
        mujoco.mj_forward(model, data)
        with RGBDRenderer(model, cam.width, cam.height, far=cam.far) as r:
            frames.append(r.render(data, cam.name))
    a, b = frames
    both = np.isfinite(a.depth) & np.isfinite(b.depth)
    assert np.mean(np.isfinite(a.depth) != np.isfinite(b.depth)) < 0.002  # silhouettes agree
    dz = np.abs(a.depth[both] - b.depth[both])
    assert np.mean(dz > 0.005) < 0.005  # < 0.5 % of pixels move by more than 5 mm
    diff = np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max(axis=2)
    assert np.mean(diff > 40) < 0.01  # < 1 % of pixels visibly different


def test_config_errors_name_field(tmp_path):
    src = load_robot_config("ur5e_leap").path
    data = yaml.safe_load(Path(src).read_text())
    data["hand"]["visual_mesh_max_faces"] = 10
    bad = tmp_path / "ur5e_leap.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(RobotConfigError) as err:
        load_robot_config(bad)
    assert err.value.field == "hand.visual_mesh_max_faces"
    data["hand"]["visual_mesh_max_faces"] = 5000
    data["hand"]["visual_mesh_keep"] = ["no_such_mesh"]
    bad.write_text(yaml.safe_dump(data))
    cfg = load_robot_config(bad)
    with pytest.raises(RobotConfigError) as err:
        Robot(cfg).robot_spec()
    assert err.value.field == "hand.visual_mesh_keep[0]" and "no_such_mesh" in str(err.value)
