"""Both combos compile in the tabletop scene, hold their pose, reach servo targets, and render."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from dex_description.compose import compile_spec, load_robot
from dex_sim.render import RGBDRenderer
from dex_sim.scene import build_scene, default_config

ROBOTS = ["ur10e_shadow", "ur5e_leap"]


@pytest.fixture(scope="module", params=ROBOTS)
def scene(request):
    robot = load_robot(request.param, check=False)
    composed = build_scene(robot)
    model = compile_spec(composed.spec)
    return robot, composed, model


def _joint_qpos(model, names):
    return np.array([model.jnt_qposadr[model.joint(n).id] for n in names])


def test_holds_home_for_5_s(scene):
    robot, composed, model = scene
    data = mujoco.MjData(model)
    key = model.key("home").id
    mujoco.mj_resetDataKeyframe(model, data, key)
    adr = _joint_qpos(model, robot.cfg.arm.joints + robot.cfg.hand.joints)
    target = model.key_qpos[key][adr]
    worst = np.zeros(len(adr))
    for _ in range(int(round(5.0 / model.opt.timestep))):
        mujoco.mj_step(model, data)
        worst = np.maximum(worst, np.abs(data.qpos[adr] - target))
    assert worst.max() <= 1e-3, dict(zip(robot.cfg.arm.joints + robot.cfg.hand.joints, worst.round(5)))


def test_servos_reach_pre_shape(scene):
    """From home, command the pre-shape key's ctrl: every joint gets there (servos and gains are sane)."""
    robot, composed, model = scene
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("home").id)
    pre = model.key("pre_shape").id
    data.ctrl[:] = model.key_ctrl[pre]
    for _ in range(int(round(3.0 / model.opt.timestep))):
        mujoco.mj_step(model, data)
    adr = _joint_qpos(model, robot.cfg.hand.joints)
    err = np.abs(data.qpos[adr] - model.key_qpos[pre][adr])
    assert err.max() < 0.02, dict(zip(robot.cfg.hand.joints, err.round(4)))


def test_renders_rgb_and_metric_depth(scene):
    robot, composed, model = scene
    cam = default_config().camera
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("home").id)
    mujoco.mj_forward(model, data)
    with RGBDRenderer(model, cam.width, cam.height, far=cam.far) as renderer:
        frame = renderer.render(data, cam.name)
    assert frame.rgb.shape == (cam.height, cam.width, 3) and frame.rgb.dtype == np.uint8
    assert frame.rgb.std() > 10  # not a blank image
    valid = np.isfinite(frame.depth)
    assert 0.5 < valid.mean() <= 1.0

    # Table pixels (from a segmentation render) back-project onto the table plane z = 0.
    seg = mujoco.Renderer(model, cam.height, cam.width)
    seg.enable_segmentation_rendering()
    seg.update_scene(data, cam.name)
    ids = seg.render()[..., 0]
    seg.close()
    table = (ids == model.geom("table").id) & valid
    assert table.sum() > 1000
    v, u = np.nonzero(table)
    z = frame.depth[v, u].astype(np.float64)
    k = cam.intrinsics()
    pts_opt = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], 1)
    world_T_opt = cam.world_T_optical()
    pts = pts_opt @ world_T_opt[:3, :3].T + world_T_opt[:3, 3]
    assert np.percentile(np.abs(pts[:, 2]), 99) < 2e-3  # [m]
