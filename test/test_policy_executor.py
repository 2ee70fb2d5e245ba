"""The open-loop executor: IK-followed approach / squeeze / lift segments, their safety checks,
and the in-hand test used by the verify stage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dex_description.compose import load_robot
from dex_planning.planner import make_planner
from dex_policy.executor import (
    ExecutionContext,
    ExecutionError,
    GraspTarget,
    MotionSegment,
    NoIKPath,
    OpenLoopExecutor,
    UnsafeMotion,
    check_segment,
    default_config,
    fingers_blocked,
    interpolate_poses,
    make_executor,
)


@pytest.fixture(scope="module")
def setup():
    robot = load_robot("ur5e_leap")
    planner = make_planner(robot)
    return robot, planner, OpenLoopExecutor(robot, planner)


def _target(robot, ex, start_q):
    """A grasp 6 cm along the palm normal from the wrist pose at ``start_q``, hand closing."""
    T0 = ex.arm.wrist_pose(start_q)
    n_world = T0[:3, :3] @ np.asarray(robot.cfg.hand.palm.normal, float)
    T1 = T0.copy()
    T1[:3, 3] += 0.06 * n_world
    pre = np.asarray(robot.cfg.hand.named_poses["pre_shape"], float)
    grasp = np.clip(pre + 0.3, ex.hand_lower, ex.hand_upper)
    squeeze = np.clip(grasp + 0.1, ex.hand_lower, ex.hand_upper)
    return GraspTarget(T0, T1, T1, pre, grasp, squeeze)


def test_approach_squeeze_lift_reach_their_targets_within_limits(setup):
    robot, planner, ex = setup
    q0 = planner.home.copy()
    tgt = _target(robot, ex, q0)
    state = {"arm": q0, "hand": tgt.pregrasp_q}
    ctx = ExecutionContext(tgt, lambda: (state["arm"], state["hand"]), lift_height=0.2)

    (app,) = list(ex.approach(ctx))
    assert app.t[0] == 0.0 and np.all(np.diff(app.t) > 0)
    reached = ex.arm.wrist_pose(app.arm_q[-1])
    assert np.linalg.norm(reached[:3, 3] - tgt.grasp_T[:3, 3]) < 1e-3
    np.testing.assert_allclose(app.hand_q[-1], tgt.grasp_q, atol=1e-9)
    # every sample realises its wrist pose, on a straight line
    for k in range(0, len(app.t), 10):
        np.testing.assert_allclose(ex.arm.wrist_pose(app.arm_q[k])[:3, 3], app.world_T_root[k][:3, 3], atol=1e-3)
    line = tgt.grasp_T[:3, 3] - tgt.pregrasp_T[:3, 3]
    off = app.world_T_root[:, :3, 3] - tgt.pregrasp_T[:3, 3]
    assert np.abs(np.cross(off, line / np.linalg.norm(line))).max() < 1e-6
    cfg = ex.cfg
    assert np.all(np.abs(app.arm_qd()) <= cfg.speed_scale * ex.arm_vlim * 1.001)
    assert np.all(np.abs(app.hand_qd()) <= cfg.speed_scale * ex.hand_vlim * 1.001)

    state.update(arm=app.arm_q[-1], hand=app.hand_q[-1])
    (sq,) = list(ex.squeeze(ctx))
    np.testing.assert_allclose(sq.arm_q, np.repeat(app.arm_q[-1:], len(sq.t), 0))  # the arm holds
    np.testing.assert_allclose(sq.hand_q[-1], tgt.squeeze_q, atol=1e-9)

    state.update(hand=sq.hand_q[-1] - 0.05)  # fingers stopped short by the object
    (lift,) = list(ex.lift(ctx))
    start, end = ex.arm.wrist_pose(lift.arm_q[0]), ex.arm.wrist_pose(lift.arm_q[-1])
    np.testing.assert_allclose(end[:3, 3] - start[:3, 3], [0.0, 0.0, 0.2], atol=1e-3)
    np.testing.assert_allclose(end[:3, :3], start[:3, :3], atol=1e-3)
    np.testing.assert_allclose(lift.hand_q, np.repeat(tgt.squeeze_q[None], len(lift.t), 0))  # keeps squeezing


def test_slow_speed_scale_stretches_the_segment(setup):
    robot, planner, _ = setup
    fast = OpenLoopExecutor(robot, planner, replace(default_config(), speed_scale=0.5, approach_min_duration=0.1,
                                                     approach_speed=10.0))
    slow = OpenLoopExecutor(robot, planner, replace(default_config(), speed_scale=0.1, approach_min_duration=0.1,
                                                     approach_speed=10.0))
    q0 = planner.home.copy()
    tgt = _target(robot, fast, q0)
    ctx = ExecutionContext(tgt, lambda: (q0, tgt.pregrasp_q))
    (a,), (b,) = list(fast.approach(ctx)), list(slow.approach(ctx))
    assert b.duration > 3 * a.duration
    ratio = np.abs(b.arm_qd()) / slow.arm_vlim
    assert ratio.max() <= 0.1 * 1.001


def test_unreachable_path_is_refused(setup):
    robot, planner, ex = setup
    q0 = planner.home.copy()
    tgt = _target(robot, ex, q0)
    far = tgt.grasp_T.copy()
    far[:3, 3] = [0.0, 3.0, 0.3]  # 3 m away: beyond the UR5e's reach
    ctx = ExecutionContext(replace(tgt, grasp_T=far), lambda: (q0, tgt.pregrasp_q))
    with pytest.raises(NoIKPath):
        list(ex.approach(ctx))


def test_check_segment_rejects_unsafe_motion(setup):
    robot, planner, ex = setup
    q0 = planner.home.copy()
    hand = np.asarray(robot.cfg.hand.named_poses["open"], float)
    t = np.linspace(0, 1, 51)
    T = ex.arm.wrist_pose(q0)
    ok = MotionSegment("x", t, np.repeat(q0[None], 51, 0), np.repeat(hand[None], 51, 0), np.repeat(T[None], 51, 0))
    limits = ((ex.arm.lower, ex.arm.upper), (ex.hand_lower, ex.hand_upper), ex.arm_vlim, ex.hand_vlim, ex.workspace)
    check_segment(ok, *limits)
    bad = replace(ok, arm_q=ok.arm_q.copy())
    bad.arm_q[10, 2] = ex.arm.upper[2] + 0.1
    with pytest.raises(UnsafeMotion, match="outside"):
        check_segment(bad, *limits)
    nan = replace(ok, hand_q=ok.hand_q.copy())
    nan.hand_q[3, 0] = np.nan
    with pytest.raises(UnsafeMotion, match="NaN"):
        check_segment(nan, *limits)
    fast = replace(ok, arm_q=q0[None] + 0.5 * np.outer(np.sin(20 * t), np.ones(6)))  # peaks at 10 rad/s
    with pytest.raises(UnsafeMotion, match="velocity"):
        check_segment(fast, *limits)
    away = replace(ok, world_T_root=ok.world_T_root.copy())
    away.world_T_root[5, 2, 3] = -0.5  # under the table
    with pytest.raises(UnsafeMotion, match="workspace"):
        check_segment(away, *limits)


def test_interpolate_poses_endpoints_and_rotation():
    a = np.eye(4)
    b = np.eye(4)
    b[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 deg about z
    b[:3, 3] = [0.1, 0.2, 0.3]
    P = interpolate_poses(a, b, np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(P[0], a, atol=1e-12)
    np.testing.assert_allclose(P[2], b, atol=1e-12)
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    np.testing.assert_allclose(P[1][:3, :3], [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(P[1][:3, 3], [0.05, 0.1, 0.15])


def test_fingers_blocked():
    grasp = np.zeros(4)
    squeeze = np.full(4, 0.2)
    assert fingers_blocked(np.full(4, 0.05), grasp, squeeze)[0]  # held 0.15 rad short
    assert not fingers_blocked(np.full(4, 0.199), grasp, squeeze)[0]  # reached the squeeze target: empty
    blocked, gap = fingers_blocked(np.array([0.2, 0.2, 0.2, 0.1]), grasp, squeeze)
    assert blocked and gap == pytest.approx(0.1)


def test_unknown_executor_name(setup):
    robot, planner, _ = setup
    with pytest.raises(ExecutionError, match="open_loop"):
        make_executor("learned_v9", robot, planner)


def test_lift_leans_toward_the_base_where_a_straight_lift_runs_out_of_reach(setup):
    """The arm stretched out over the table (a grasp the e2e benchmark met, LEAP seed 1005): lifting
    0.25 m straight up drives the elbow to its singularity and the IK to another branch; the lift
    leans toward the base instead, and still rises the full height."""
    robot, planner, ex = setup
    q0 = np.array([-2.133, -0.442, 0.551, -0.489, -1.117, -1.433])
    T0 = ex.arm.wrist_pose(q0)
    hand = np.asarray(robot.cfg.hand.named_poses["pre_shape"], float)
    tgt = GraspTarget(T0, T0, T0, hand, hand, hand)
    ctx = ExecutionContext(tgt, lambda: (q0, hand), lift_height=0.25)
    straight = OpenLoopExecutor(robot, planner, replace(default_config(), lift_lean=(0.0,), lift_min_fraction=1.0))
    with pytest.raises(NoIKPath):
        list(straight.lift(ctx))
    (seg,) = list(ex.lift(ctx))
    end = seg.world_T_root[-1]
    rise = end[2, 3] - T0[2, 3]
    assert rise == pytest.approx(0.25, abs=1e-6)
    base_xy = ex.arm.world_T_base[:2, 3]
    assert np.linalg.norm(end[:2, 3] - base_xy) < np.linalg.norm(T0[:2, 3] - base_xy) - 0.05  # leaned in
    np.testing.assert_allclose(end[:3, :3], T0[:3, :3], atol=1e-9)  # orientation held
    assert np.abs(np.diff(seg.arm_q, axis=0)).max() <= default_config().max_joint_step
    reached = ex.arm.wrist_pose(seg.arm_q[-1])
    assert np.linalg.norm(reached[:3, 3] - end[:3, 3]) < 1e-3


def test_a_lift_that_would_meet_the_robot_itself_stops_short_of_it(setup, monkeypatch):
    """The planner's model reports the arm against the hand above some height (as a UR10e's forearm
    met the Shadow hand's forearm in a lift): every lift variant meets it, so the lift ends three
    samples before the contact, if that is still half the height; lower, it is refused. Contacts
    with the environment, or present from the start, do not count."""
    robot, planner, ex = setup
    q0 = planner.home.copy()
    tgt = _target(robot, ex, q0)
    z0 = ex.arm.wrist_pose(q0)[2, 3]
    ctx = ExecutionContext(tgt, lambda: (q0, tgt.squeeze_q), lift_height=0.2)
    pair = ("forearm_link/geom1", "palm/hull")
    limit = {"z": 0.13}

    def fake(arm_q, hand_q):
        up = ex.arm.wrist_pose(np.asarray(arm_q))[2, 3] - z0
        return [("wrist_3_link/geom0", "palm/hull"), ("palm/hull", "env/table")] + ([pair] if up > limit["z"] else [])

    monkeypatch.setattr(ex.arm.planner, "start_collisions", fake)
    (seg,) = list(ex.lift(ctx))
    rise = seg.world_T_root[-1][2, 3] - z0
    assert 0.1 <= rise < 0.13
    assert all(pair not in fake(q, None) for q in seg.arm_q)
    limit["z"] = 0.08  # free for less than half the lift: refused, naming the pair
    with pytest.raises(UnsafeMotion, match="forearm_link/geom1 <-> palm/hull"):
        list(ex.lift(ctx))
    limit["z"] = 1.0  # never met: the full lift
    (seg,) = list(ex.lift(ctx))
    assert seg.world_T_root[-1][2, 3] - z0 == pytest.approx(0.2, abs=1e-6)


def test_hand_targets_a_hair_outside_the_limits_are_clipped_far_ones_refused(setup):
    """A squeeze target 2 mrad past a joint stop (the e2e benchmark met one: the proposal's limits
    round differently) is clipped onto the stop; 0.3 rad past it is refused, nothing sent."""
    robot, planner, ex = setup
    q0 = planner.home.copy()
    tgt = _target(robot, ex, q0)
    hair = tgt.squeeze_q.copy()
    hair[11] = ex.hand_lower[11] - 0.002
    state = {"arm": q0, "hand": tgt.grasp_q}
    ctx = ExecutionContext(replace(tgt, grasp_T=tgt.pregrasp_T, squeeze_T=tgt.pregrasp_T, squeeze_q=hair),
                           lambda: (state["arm"], state["hand"]))
    (seg,) = list(ex.squeeze(ctx))
    assert seg.hand_q[-1, 11] == ex.hand_lower[11]
    far = hair.copy()
    far[11] = ex.hand_lower[11] - 0.3
    ctx = ExecutionContext(replace(ctx.target, squeeze_q=far), ctx.state)
    with pytest.raises(UnsafeMotion):
        list(ex.squeeze(ctx))


def test_a_measured_finger_pressed_past_its_stop_starts_the_segment_from_the_stop(setup):
    """The e2e benchmark met Shadow's thumb read 0.020 rad past its stop (the object pushed it) at the
    start of the squeeze, and the segment was refused. A measured start up to START_SLACK past a stop
    starts from the stop; a start farther out is still refused."""
    from dex_policy.executor import START_SLACK

    robot, planner, ex = setup
    q0 = planner.home.copy()
    tgt = _target(robot, ex, q0)
    pressed = tgt.grasp_q.copy()
    pressed[11] = ex.hand_upper[11] + 0.03
    assert 0.03 < START_SLACK
    ctx = ExecutionContext(replace(tgt, grasp_T=tgt.pregrasp_T, squeeze_T=tgt.pregrasp_T), lambda: (q0, pressed))
    (seg,) = list(ex.squeeze(ctx))
    assert seg.hand_q[0, 11] == ex.hand_upper[11] and np.all(seg.hand_q[:, 11] <= ex.hand_upper[11] + 1e-12)
    broken = pressed.copy()
    broken[11] = ex.hand_upper[11] + START_SLACK + 0.05
    with pytest.raises(UnsafeMotion):
        list(ex.squeeze(ExecutionContext(ctx.target, lambda: (q0, broken))))
