"""SimEnv: settled object placement, reproducibility, depth -> table plane with only camera_info +
calibration, driver-like commands (validation, tracking, velocity limits), state conventions, spawn."""

from __future__ import annotations

import numpy as np
import pytest

from dex_sim.calibration import read_calibration
from dex_sim.commands import Channel, Plan, validate_trajectory
from dex_sim.env import (
    SEG_TABLE,
    CommandRejected,
    JointStateCommand,
    JointTrajectoryCommand,
    ResetError,
    SimEnv,
    TrajectoryPoint,
)
from dex_sim.render import depth_to_mm


@pytest.fixture(scope="module")
def leap():
    env = SimEnv(robot="ur5e_leap", num_objects=3)
    yield env
    env.close()


@pytest.fixture(scope="module")
def shadow():
    env = SimEnv(robot="ur10e_shadow", num_objects=2)
    yield env
    env.close()


def _penetration(env: SimEnv) -> float:
    d = env.data
    return max([-c.dist for c in d.contact[: d.ncon]] or [0.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_objects_settle_on_the_table(leap, seed):
    obs = leap.reset(seed=seed)
    assert len(obs.object_names) == 3
    before = leap.object_poses()
    leap.step_time(0.5)  # already at rest: nothing moves
    after = leap.object_poses()
    t = leap.cfg.scene.table
    for name, T in after.items():
        assert np.linalg.norm(T[:3, 3] - before[name][:3, 3]) < 2e-3, name
        assert abs(T[0, 3] - t.center_xy[0]) < t.size_xy[0] / 2 and abs(T[1, 3] - t.center_xy[1]) < t.size_xy[1] / 2
        # lowest point of the object's parts is on the table (not below, not floating)
        spec = leap.object_specs()[name]
        from dex_sim.objects import convex_parts

        pts = np.vstack(convex_parts(spec)) @ T[:3, :3].T + T[:3, 3]
        assert abs(pts[:, 2].min() - t.top_z) < 3e-3, (name, pts[:, 2].min())
    assert _penetration(leap) < 2e-3
    arm_q, hand_q = leap.model_joint_positions()
    np.testing.assert_allclose(arm_q, leap.robot.cfg.arm.named_poses["home"], atol=1e-9)


def test_reset_is_reproducible_and_names_work(leap):
    a = leap.reset(seed=7)
    pa = leap.object_poses()
    b = leap.reset(seed=7)
    pb = leap.object_poses()
    assert a.object_names == b.object_names
    for n in pa:
        np.testing.assert_allclose(pa[n], pb[n], atol=1e-9)
    c = leap.reset(seed=3, object_names=["mug_01", "bowl_02"])
    assert c.object_names == ["mug_01", "bowl_02"]
    with pytest.raises(ResetError, match="no_such"):
        leap.reset(seed=0, object_names=["no_such"])
    with pytest.raises(ResetError, match="requested"):
        leap.reset(seed=0, num_objects=1000)
    test_set = leap.reset(seed=0, object_set="builtin/test", num_objects=2)
    assert all(leap.object_set.get(n).split == "test" for n in test_set.object_names)
    leap.reset(seed=0, object_set="builtin", num_objects=3)


def test_depth_cloud_lands_on_table_with_calibration_only(leap, tmp_path):
    leap.reset(seed=4)
    path = leap.write_calibration(tmp_path / "calib.yaml")
    base_T_opt, base, optical = read_calibration(path)  # what a real user has: calibration + camera_info
    info = leap.camera_info()
    assert (base, optical) == ("base_link", info.frame_id)
    frame = leap.render()
    seg = leap.render_segmentation()  # ground truth only to pick the table pixels
    assert seg.ids.shape == frame.depth.shape
    for depth in (frame.depth.astype(np.float64), depth_to_mm(frame.depth).astype(np.float64) / 1000.0):
        table = (seg.ids == SEG_TABLE) & np.isfinite(depth) & (depth > 0)
        assert table.sum() > 50_000
        v, u = np.nonzero(table)
        z = depth[v, u]
        K = info.K
        pts = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], 1)
        world = pts @ base_T_opt[:3, :3].T + base_T_opt[:3, 3]
        t = leap.cfg.scene.table  # the top, not the slab's side faces (1 cm in from the edges)
        top = (np.abs(world[:, 0] - t.center_xy[0]) < t.size_xy[0] / 2 - 0.01) & (np.abs(world[:, 1] - t.center_xy[1]) < t.size_xy[1] / 2 - 0.01)
        assert top.mean() > 0.95
        assert np.abs(world[top, 2]).max() <= 2e-3, np.abs(world[top, 2]).max()
    # every placed object is visible and labelled
    for k, name in seg.labels.items():
        if k >= 3:
            assert (seg.ids == k).sum() > 100, name


def test_shipped_sample_calibration_matches_scene(leap):
    from dex_description.paths import config_dir

    T, base, optical = read_calibration(config_dir() / "calibration" / "sim_camera.yaml")
    np.testing.assert_allclose(T, leap.camera_info().world_T_optical, atol=1e-9)


def _arm_cmd(env, q, t=1.0):
    return JointTrajectoryCommand(env.arm_channel.names, [TrajectoryPoint(list(q), t)])


def test_malformed_commands_rejected_env_keeps_running(leap):
    leap.reset(seed=0)
    names = list(leap.arm_channel.names)
    home = np.array(leap.robot.cfg.arm.named_poses["home"])
    good = home + 0.1
    leap.command_arm(_arm_cmd(leap, good, 1.0))
    cases = {
        "unknown": JointTrajectoryCommand(["nope"] + names[1:], [TrajectoryPoint(list(good), 1.0)]),
        "duplicate": JointTrajectoryCommand(names[:5] + names[:1], [TrajectoryPoint(list(good), 1.0)]),
        "partial": JointTrajectoryCommand(names[:5], [TrajectoryPoint(list(good[:5]), 1.0)]),
        "nan": _arm_cmd(leap, [np.nan] + list(good[1:])),
        "inf": _arm_cmd(leap, list(good[:5]) + [np.inf]),
        "limits": _arm_cmd(leap, good + np.array([0, 0, 0, 0, 0, 7.0]), 10.0),
        "empty points": JointTrajectoryCommand(names, []),
        "empty names": JointTrajectoryCommand([], [TrajectoryPoint([], 1.0)]),
        "length": JointTrajectoryCommand(names, [TrajectoryPoint(list(good[:4]), 1.0)]),
        "order": JointTrajectoryCommand(names, [TrajectoryPoint(list(good), 1.0), TrajectoryPoint(list(home), 1.0)]),
        "negative time": JointTrajectoryCommand(names, [TrajectoryPoint(list(good), -1.0)]),
        "too fast": _arm_cmd(leap, home + 1.0, 0.1),
        "declared velocity": JointTrajectoryCommand(names, [TrajectoryPoint(list(good), 2.0, velocities=[10.0] * 6)]),
        "jump at t=0": _arm_cmd(leap, home + 0.5, 0.0),
        "wrong type": JointStateCommand(list(good), names),
    }
    reasons = {}
    for what, cmd in cases.items():
        with pytest.raises(CommandRejected) as err:
            leap.command_arm(cmd)
        reasons[what] = err.value.reason
        assert err.value.reason, what
    assert "unknown" in reasons["unknown"] and "duplicate" in reasons["duplicate"] and "misses" in reasons["partial"]
    assert "NaN" in reasons["nan"] and "NaN" in reasons["inf"] and "limits" in reasons["limits"]
    assert "velocity" in reasons["too fast"] and "velocity" in reasons["declared velocity"] and "jump" in reasons["jump at t=0"]
    # hand (LEAP: JointState in driver order with +pi offset)
    hch = leap.hand_channel
    hand_cases = {
        "length": JointStateCommand([np.pi] * 3),
        "nan": JointStateCommand([np.nan] + [np.pi] * 15),
        "limits": JointStateCommand([np.pi + 3.0] * 16),
        "unknown": JointStateCommand([np.pi] * 16, ["x"] + hch.names[1:]),
        "empty": JointStateCommand([]),
        "wrong type": JointTrajectoryCommand(hch.names, [TrajectoryPoint([np.pi] * 16, 1.0)]),
    }
    for what, cmd in hand_cases.items():
        with pytest.raises(CommandRejected):
            leap.command_hand(cmd)
    # the good trajectory issued first is still executed: rejected commands changed nothing
    leap.step_time(1.6)
    arm_q, _ = leap.model_joint_positions()
    np.testing.assert_allclose(arm_q, good, atol=5e-3)


@pytest.mark.parametrize("robot", ["ur5e_leap", "ur10e_shadow"])
def test_trajectory_and_hand_target_reached(robot, leap, shadow):
    env = leap if robot == "ur5e_leap" else shadow
    env.reset(seed=1)
    cfg = env.robot.cfg
    home = np.array(cfg.arm.named_poses["home"])
    goal = home + np.array([0.3, -0.25, 0.3, 0.2, -0.3, 0.4])
    mid = home + 0.5 * (goal - home)
    vel = (goal - home) / 1.2
    env.command_arm(JointTrajectoryCommand(env.arm_channel.names, [
        TrajectoryPoint(list(mid), 0.6, velocities=list(vel)), TrajectoryPoint(list(goal), 1.2, velocities=[0.0] * 6)]))
    target = np.array(cfg.hand.named_poses["pre_shape"])
    env.command_hand(env.hand_command_from_joints(target, duration=0.8))
    env.step_time(0.6)
    arm_q, _ = env.model_joint_positions()
    np.testing.assert_allclose(arm_q, mid, atol=0.02)  # on the way, near the via point at its time
    env.step_time(1.4)
    arm_q, hand_q = env.model_joint_positions()
    np.testing.assert_allclose(arm_q, goal, atol=2e-3)
    np.testing.assert_allclose(hand_q, target, atol=0.03)
    assert not env.arm_busy and not env.hand_busy
    # joint_state() reports the drivers' view
    js = env.joint_state()
    assert js.names[:6] == list(cfg.arm.driver.joints[i].name for i in range(6))
    for d in cfg.hand.driver.joints:  # LEAP: +pi offset, hardware order
        i = js.names.index(d.name)
        assert abs(js.position[i] - (hand_q[list(cfg.hand.joints).index(d.joint)] * d.scale + d.offset)) < 1e-12
    if not cfg.hand.driver.joints:
        assert js.names[6:] == list(cfg.hand.joints)


def test_shadow_trajectory_names_are_actuated(shadow):
    shadow.reset(seed=0)
    names = shadow.hand_channel.names
    assert len(names) == 20 and "rh_FFJ0" in names and "rh_FFJ1" not in names
    bad = list(names)
    bad[4] = "rh_FFJ1"
    with pytest.raises(CommandRejected, match="unknown"):
        shadow.command_hand(JointTrajectoryCommand(bad, [TrajectoryPoint([0.0] * 20, 1.0)]))


def test_velocity_limits_enforced(leap):
    """A far hand target (a JointState has no timing) moves no faster than the velocity limit."""
    leap.reset(seed=0)
    ch = leap.hand_channel
    q0 = leap.model_joint_positions()[1].copy()
    target = np.array(leap.robot.cfg.hand.named_poses["pre_shape"]) * 0 + 0.9
    target[[list(leap.robot.cfg.hand.joints).index(j) for j in ("if_rot", "mf_rot", "rf_rot")]] = 0.0
    target[12] = 1.5
    leap.command_hand(leap.hand_command_from_joints(target))
    prev = leap.servo_setpoints()[1]
    max_rate = 0.0
    for _ in range(100):
        leap.step(1)
        cur = leap.servo_setpoints()[1]
        max_rate = max(max_rate, float(np.max(np.abs(cur - prev) / leap.dt / ch.vel_limit.max())))
        prev = cur
    assert max_rate <= 1.0 + 1e-9
    leap.step_time(1.0)
    np.testing.assert_allclose(leap.model_joint_positions()[1], target, atol=0.05)
    assert np.abs(target - q0).max() / ch.vel_limit.max() > 0.2  # it did need rate limiting


def test_interpolation_hits_waypoints():
    ch = Channel("arm", ["a", "b"], np.ones(2), np.zeros(2), -np.ones(2) * 3, np.ones(2) * 3, np.ones(2) * 2.0)
    cmd = JointTrajectoryCommand(["b", "a"], [TrajectoryPoint([0.5, 0.2], 1.0, [0.1, 0.0]), TrajectoryPoint([1.0, 0.4], 2.0, [0.0, 0.0])])
    plan = validate_trajectory(ch, cmd, now=10.0, current=np.zeros(2))
    assert isinstance(plan, Plan)
    np.testing.assert_allclose(plan.sample(10.0), [0.0, 0.0])
    np.testing.assert_allclose(plan.sample(11.0), [0.2, 0.5])  # name order mapped
    np.testing.assert_allclose(plan.sample(12.0), [0.4, 1.0])
    np.testing.assert_allclose(plan.sample(50.0), [0.4, 1.0])  # holds the end
    eps = 1e-6
    v = (plan.sample(11.0 + eps) - plan.sample(11.0 - eps)) / (2 * eps)
    np.testing.assert_allclose(v, [0.0, 0.1], atol=1e-5)  # cubic Hermite honours the velocities


def test_spawn_object_keeps_robot_state(leap):
    leap.reset(seed=2, num_objects=1)
    home = np.array(leap.robot.cfg.arm.named_poses["home"])
    leap.command_arm(_arm_cmd(leap, home + 0.2, 1.0))
    leap.step_time(0.5)
    q_before, _ = leap.model_joint_positions()
    name = leap.spawn_object("box_02", pos=np.array([0.15, 0.55, 0.0]), quat=np.array([1.0, 0, 0, 0]), settle=False)
    q_after, _ = leap.model_joint_positions()
    np.testing.assert_array_equal(q_before, q_after)
    assert name in leap.object_names and len(leap.object_names) == 2
    leap.step_time(1.0)
    T = leap.object_poses()[name]
    assert abs(T[2, 3]) < 3e-3 and np.allclose(T[:2, 3], [0.15, 0.55], atol=0.01)
    np.testing.assert_allclose(leap.model_joint_positions()[0], home + 0.2, atol=5e-3)  # the trajectory went on
    again = leap.spawn_object("box_02", pos=np.array([-0.1, 0.5, 0.1]))
    assert again == "box_02#2"
    with pytest.raises(ResetError, match="table"):
        leap.spawn_object("box_02", pos=np.array([5.0, 0.0, 0.0]))
    with pytest.raises(ResetError):
        leap.spawn_object("box_02", pos=np.array([np.nan, 0.0, 0.0]))
