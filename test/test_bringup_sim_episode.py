"""The in-process episode ports over SimEnv: perception of the target, motion through the
driver-like commands, cancellation, and a verify stage that uses no ground truth.

A full episode (synthesis included) runs in the orchestrator's graph test and in the benchmark;
here the proposer is not loaded and the motions are small, so the file stays fast."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from dex_bringup.episode import Goal, StageFailed  # noqa: E402
from dex_bringup.sim_episode import Perceived, Planned, SimPorts, default_config, hand_geoms  # noqa: E402
from dex_policy.executor import GraspTarget  # noqa: E402


@pytest.fixture(scope="module")
def ports():
    from dex_sim.env import SimEnv

    env = SimEnv(robot="ur5e_leap", object_set="builtin/test", num_objects=1)
    env.reset(seed=3)
    p = SimPorts(env, default_config(), seed=0, proposer=object())
    yield p
    env.close()


def _free_target(ports) -> GraspTarget:
    """A 'grasp' 5 cm along the palm normal from the home wrist pose, in free space."""
    arm_q, hand_q = ports.env.model_joint_positions()
    ex = ports.executor
    T0 = ex.arm.wrist_pose(arm_q)
    T1 = T0.copy()
    T1[:3, 3] += 0.05 * (T0[:3, :3] @ np.asarray(ports.robot.cfg.hand.palm.normal, float))
    return GraspTarget(T0, T1, T1, hand_q, hand_q, hand_q)


def test_perceive_finds_the_object_where_it_is(ports):
    env = ports.env
    env.reset(seed=3)
    per = ports.perceive(Goal(), 5.0, threading.Event())
    (pose,) = env.object_poses().values()  # ground truth, only to check the test
    assert len(per.points) > 100 and per.points.shape == per.normals.shape
    assert np.linalg.norm(per.centroid[:2] - pose[:2, 3]) < 0.05
    assert "scene" in ports.frames


def test_verify_fails_when_nothing_was_lifted(ports):
    env = ports.env
    env.reset(seed=3)
    per = ports.perceive(Goal(), 5.0, threading.Event())
    tgt = _free_target(ports)
    plan = Planned(None, 0, None, tgt, 0.0)
    ok, why = ports.verify(per, plan, 0.25, 5.0, threading.Event())
    assert not ok and "still where it stood" in why
    # an empty place but fingers at their squeeze target (closed on nothing): a drop
    far = Perceived(per.points, per.normals, per.obstacles, per.centroid + np.array([0.0, 0.0, 0.5]), 0.0)
    ok, why = ports.verify(far, plan, 0.25, 5.0, threading.Event())
    assert not ok and "closed on nothing" in why


def test_motion_stage_moves_the_arm_through_the_driver_and_cancel_stops_it(ports):
    env = ports.env
    env.reset(seed=3)
    tgt = _free_target(ports)
    plan = Planned(None, 0, None, tgt, 0.0)
    ports.approach(plan, 20.0, threading.Event())
    reached = ports.executor.arm.wrist_pose(env.model_joint_positions()[0])
    assert np.linalg.norm(reached[:3, 3] - tgt.grasp_T[:3, 3]) < 0.005

    env.reset(seed=3)
    cancel = threading.Event()
    cancel.set()  # cancelled before the first control tick: nothing may move
    q0 = env.model_joint_positions()[0]
    ports.approach(Planned(None, 0, None, _free_target(ports), 0.0), 20.0, cancel)
    env.step_time(0.5)
    assert np.abs(env.model_joint_positions()[0] - q0).max() < 0.01
    assert not env.arm_busy


def test_a_target_under_the_table_is_refused_before_any_motion(ports):
    env = ports.env
    env.reset(seed=3)
    tgt = _free_target(ports)
    low = tgt.grasp_T.copy()
    low[2, 3] = -0.05  # 5 cm into the table: outside the workspace box
    q0 = env.model_joint_positions()[0]
    with pytest.raises(StageFailed, match="workspace"):
        ports.approach(Planned(None, 0, None, GraspTarget(tgt.pregrasp_T, low, low, tgt.pregrasp_q, tgt.grasp_q,
                                                          tgt.squeeze_q), 0.0), 20.0, threading.Event())
    assert not env.arm_busy
    np.testing.assert_allclose(env.model_joint_positions()[0], q0)


def test_hand_geoms_are_the_hand_subtree(ports):
    env = ports.env
    geoms = hand_geoms(env)
    m = env.model
    names = {m.body(int(m.geom_bodyid[g])).name for g in geoms}
    assert env.robot.cfg.hand.root_body in names and len(geoms) > 10
    assert not any(n.startswith(("shoulder", "upper_arm", "forearm_link", "wrist")) for n in names)
