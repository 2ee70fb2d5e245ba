"""dex_planning core (ROS-free): kinematics and IK conventions, collision model, timing, selection loop.

Every check here could fail: FK of the Pinocchio chain vs our torch FK, the closed-form IK's base
frame, hull conservativeness, broad phase == narrow phase, margin levels, lever-arm bound, limits
between TOPP-RA grid points, the planned trajectory in an independent MuJoCo re-check, and each
typed failure reason.
"""

from __future__ import annotations

import math
from dataclasses import replace

import mujoco
import numpy as np
import pytest
import torch

from dex_description.compose import load_robot
from dex_description.kinematics import RobotKinematics
from dex_planning.bench import reachable_scenario
from dex_planning.collision import ArmCollisionModel, Margins, cached_guess_enabled
from dex_planning.config import IKConfig, default_config, load_config, override, validate
from dex_planning.cpu import CpuPlanner, check_trajectory
from dex_planning.errors import InvalidInputError, PlanningConfigError
from dex_planning.ik import ArmIK, analytic_module, flange_target, pose_error, wrap_into
from dex_planning.interface import (
    REASON_COLLISION_AT_GOAL,
    REASON_INVALID,
    REASON_NO_IK,
    REASON_NOT_TRIED,
    REASON_PLANNER_TIMEOUT,
    REASON_PRESHAPE_COLLISION,
    STATUS_INVALID,
    STATUS_NO_FEASIBLE,
    STATUS_OK,
    STATUS_TIMEOUT,
    ProposalTarget,
)
from dex_planning.planner import START_LIMIT_TOL, hand_pre_shaping, make_target, quat_to_matrix, touches_environment
from dex_planning.scene import Box, PlanningScene, default_scene, table_box
from dex_planning.timing import TrapezoidSegment, limit_ratios, parameterize, sample_times, spline_path
from dex_planning.verify import MujocoChecker, fd_limit_ratios

COMBOS = ("ur5e_leap", "ur10e_shadow")


@pytest.fixture(scope="module", params=COMBOS)
def robot(request):
    return load_robot(request.param)


@pytest.fixture(scope="module")
def planner(robot):
    return CpuPlanner(robot)


def _random_arm(rng, planner, n):
    lo, hi = planner.bounds(planner.home)
    return rng.uniform(np.maximum(lo, -np.pi), np.minimum(hi, np.pi), (n, 6))


# --------------------------------------------------------------------------- kinematics and IK


def test_flange_matches_torch_fk(robot, planner):
    """The Pinocchio chain built from the MjModel gives our torch FK's flange (tool0) to 1e-9 m."""
    rng = np.random.default_rng(0)
    kin = RobotKinematics(robot, dtype=torch.float64, with_spheres=False)
    q = np.concatenate([_random_arm(rng, planner, 50), rng.uniform(kin.lower[6:].numpy(), kin.upper[6:].numpy(), (50, kin.n_joints - 6))], 1)
    R, p = kin.flange(kin.forward(torch.as_tensor(q)))
    for i in range(len(q)):
        T = planner.flange_pose(q[i, :6])
        assert np.abs(T[:3, 3] - p[i].numpy()).max() < 1e-9
        assert np.abs(T[:3, :3] - R[i].numpy()).max() < 1e-9


def test_closed_form_ik_base_frame(robot, planner):
    """ur-analytic-ik's base is our base_link: orientations agree exactly (no pi about z), positions
    within the nominal-vs-model link-length difference (UR10e model flange 16.6 mm short of d6)."""
    mod = analytic_module(robot.cfg.arm.name)
    assert mod is not None
    rng = np.random.default_rng(1)
    qs = _random_arm(rng, planner, 50)
    rz = np.diag([-1.0, -1.0, 1.0])
    pos_err, flipped_err = [], []
    for q in qs:
        ours = planner.flange_pose(q)
        theirs = np.asarray(mod.forward_kinematics(*q))
        assert pose_error(ours, theirs)[1] < 1e-6
        pos_err.append(np.linalg.norm(ours[:3, 3] - theirs[:3, 3]))
        flipped_err.append(np.linalg.norm(ours[:3, 3] - rz @ theirs[:3, 3]))
    assert max(pos_err) < 0.03
    assert np.median(flipped_err) > 0.2  # a pi rotation of the base would be caught


def test_ik_round_trip(robot, planner):
    """IK of FK(q): every solution reaches the pose (polished onto our model) and q itself is among them."""
    rng = np.random.default_rng(2)
    lo, hi = planner.bounds(planner.home)
    found, n = 0, 40
    for q in _random_arm(rng, planner, n):
        T = planner.flange_pose(q)
        sols = planner.ik.solve(T, lo, hi, q)
        assert sols, f"no IK solution for {q}"
        for s in sols:
            dp, dr = pose_error(planner.flange_pose(s), T)
            assert dp < 2e-5 and dr < 2e-4
            assert np.all(s >= lo - 1e-9) and np.all(s <= hi + 1e-9)
        if any(np.abs(np.angle(np.exp(1j * (s - q)))).max() < 1e-3 for s in sols):
            found += 1
    assert found >= 0.9 * n


def test_ik_numeric_fallback(robot, planner):
    ik = ArmIK(planner.collision, IKConfig(analytic=False))
    rng = np.random.default_rng(3)
    lo, hi = planner.bounds(planner.home)
    ok = 0
    for q in _random_arm(rng, planner, 8):
        T = planner.flange_pose(q)
        sols = ik.solve(T, lo, hi, q)
        ok += bool(sols)
        for s in sols:
            dp, dr = pose_error(planner.flange_pose(s), T)
            assert dp < 2e-5 and dr < 2e-4
    assert ok >= 6


def test_ik_rejects_malformed_targets(planner):
    lo, hi = planner.bounds(planner.home)
    T = np.eye(4)
    T[0, 3] = np.nan
    with pytest.raises(InvalidInputError):
        planner.ik.solve(T, lo, hi, planner.home)
    S = np.eye(4)
    S[:3, :3] *= 2.0
    with pytest.raises(InvalidInputError):
        planner.ik.solve(S, lo, hi, planner.home)


def test_wrap_into_and_flange_target(robot):
    q = np.array([3.0, -3.0, 0.5, 6.0, -6.0, 0.0])
    lo, hi = np.full(6, -np.pi), np.full(6, np.pi)
    w = wrap_into(q, lo, hi, np.zeros(6))
    assert np.allclose(np.angle(np.exp(1j * (w - q))), 0, atol=1e-12)
    assert np.all(np.abs(w) <= np.pi)
    assert wrap_into(np.array([0, 0, 4.0, 0, 0, 0]), lo, np.array([np.pi, np.pi, 0.5, np.pi, np.pi, np.pi]),
                     np.zeros(6))[2] == pytest.approx(4.0 - 2 * np.pi)
    root = np.eye(4)
    root[:3, 3] = [0.1, 0.5, 0.3]
    f_T_r = robot.cfg.flange_T_root.matrix()
    assert np.allclose(flange_target(root, f_T_r) @ f_T_r, root)


def test_quaternion_and_target_validation(robot):
    assert np.allclose(quat_to_matrix([1, 0, 0, 0]), np.eye(3))
    with pytest.raises(InvalidInputError, match="unit norm"):
        quat_to_matrix([2, 0, 0, 0])
    names = list(robot.cfg.hand.joints)
    q = list(robot.cfg.hand.named_poses["pre_shape"])
    t = make_target(robot, "p", [0.1, 0.5, 0.3], [1, 0, 0, 0], names[::-1], q[::-1])
    assert np.allclose(t.hand_q, q)
    with pytest.raises(InvalidInputError, match="NaN"):
        make_target(robot, "p", [0.1, 0.5, 0.3], [1, 0, 0, 0], names, [math.nan] * len(names))
    with pytest.raises(InvalidInputError, match="missing"):
        make_target(robot, "p", [0.1, 0.5, 0.3], [1, 0, 0, 0], names[1:], q[1:])
    with pytest.raises(InvalidInputError, match="outside"):
        make_target(robot, "p", [0.1, 0.5, 0.3], [1, 0, 0, 0], names, [10.0] * len(names))


# --------------------------------------------------------------------------- collision model


def _scene_with_everything(rng) -> PlanningScene:
    cloud = rng.uniform([-0.1, 0.45, 0.0], [0.1, 0.65, 0.15], (3000, 3))
    return default_scene(cloud=cloud, boxes=(Box.axis_aligned("b", (0.35, 0.4, 0.15), (0.1, 0.1, 0.3)),))


def test_broad_phase_matches_narrow_phase(planner):
    rng = np.random.default_rng(4)
    planner.set_scene(_scene_with_everything(rng))
    planner.collision.set_hand(planner.robot.cfg.hand.named_poses["pre_shape"])
    qs = planner.home + rng.uniform(-1.5, 1.5, (400, 6))
    for level in ("plan", "endpoint", "exact"):
        a = np.array([planner.collision.in_collision(q, level) for q in qs])
        b = np.array([planner.collision.in_collision_narrow(q, level) for q in qs])
        assert np.array_equal(a, b)
        assert 0.05 < a.mean() < 0.95
    for gd in planner.collision._gdata.values():
        assert not any(cached_guess_enabled(r) for r in gd.collisionRequests)
    # the default of Pinocchio would use it: the check above is not vacuous
    import pinocchio as pin

    assert cached_guess_enabled(pin.GeometryData(planner.collision.geom_model).collisionRequests[0])


def test_home_is_free_and_hulls_are_conservative(robot):
    """Hand hulls contain the hand geoms: whenever the per-geom model collides, the hull model does."""
    rng = np.random.default_rng(5)
    hulls = ArmCollisionModel(robot, "hulls")
    geoms = ArmCollisionModel(robot, "geoms")
    home = robot.cfg.arm.named_poses["home"]
    assert hulls.colliding_pairs(home) == [] and geoms.colliding_pairs(home) == []
    scene = PlanningScene(tuple(Box.axis_aligned(f"b{k}", rng.uniform([-0.5, 0.0, 0.0], [0.5, 0.9, 0.6]), (0.08, 0.08, 0.08))
                                for k in range(12)))
    hulls.set_scene(scene)
    geoms.set_scene(scene)
    n_geom_hits, n_only_hull = 0, 0
    for q in home + rng.uniform(-1.2, 1.2, (600, 6)):
        g, h = geoms.in_collision(q), hulls.in_collision(q)
        assert h or not g
        n_geom_hits += g
        n_only_hull += h and not g
    assert n_geom_hits > 20


def test_margin_levels(planner):
    """A box a few mm below the robot's lowest point at home: free at ``exact``/``endpoint``, hit at ``plan``."""
    cm = planner.collision
    cm.set_hand(planner.robot.cfg.hand.named_poses["pre_shape"])
    q = planner.home + np.array([0.0, 0.5, 0.4, -0.5, 0.0, 0.0])  # hand lowered towards the table

    def box_at(top):
        return PlanningScene((Box.axis_aligned("slab", (0.0, 0.45, top - 0.05), (2.0, 2.0, 0.1)),))

    lo, hi = -0.5, 1.0  # bisect the height where the slab starts touching
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        planner.set_scene(box_at(mid))
        lo, hi = (lo, mid) if cm.in_collision(q, "exact") else (mid, hi)
    touch = lo
    planner.set_scene(box_at(touch - 0.005))
    assert not cm.in_collision(q, "exact") and not cm.in_collision(q, "endpoint")
    assert cm.in_collision(q, "plan")


def test_lever_arm_bound(planner):
    """No robot point moves further than sum_i R_i |dq_i| for a small joint step (MuJoCo FK)."""
    robot = planner.robot
    m = robot.model
    d = mujoco.MjData(m)
    arm_adr = [m.jnt_qposadr[m.joint(j).id] for j in robot.cfg.arm.joints]
    hand_adr = [m.jnt_qposadr[m.joint(j).id] for j in robot.cfg.hand.joints]
    planner.collision.set_hand(robot.cfg.hand.named_poses["pre_shape"])
    rng = np.random.default_rng(6)
    base = m.body(robot.cfg.arm.base_body).id

    def points(q):
        d.qpos[:] = m.qpos0
        d.qpos[arm_adr] = q
        d.qpos[hand_adr] = robot.cfg.hand.named_poses["pre_shape"]
        mujoco.mj_kinematics(m, d)
        return np.concatenate([d.xpos[base + 1:], d.geom_xpos])

    worst = 0.0
    for q in _random_arm(rng, planner, 200):
        dq = rng.normal(size=6) * 1e-3
        disp = np.linalg.norm(points(q + dq) - points(q), axis=1).max()
        bound = float(np.abs(dq) @ planner.R)
        worst = max(worst, disp / bound)
    assert worst <= 1.0 + 1e-6
    assert worst > 0.3  # the bound is not vacuous


# --------------------------------------------------------------------------- timing


def test_trapezoid_is_exact_and_time_optimal():
    rng = np.random.default_rng(7)
    vlim, alim = np.array([2.0, 2.0, 3.0, 3.0, 3.0, 3.0]), np.array([2.5, 2.5, 4.0, 8.0, 8.0, 8.0])
    for _ in range(20):
        a, b = rng.uniform(-3, 3, 6), rng.uniform(-3, 3, 6)
        seg = TrapezoidSegment.plan(a, b, vlim, alim, 0.05)
        t = sample_times(seg.duration, 0.001)
        q, qd, qdd = seg.evaluate(t)
        assert np.allclose(q[0], a) and np.allclose(q[-1], b, atol=1e-9)
        vr, ar = limit_ratios(qd, qdd, vlim, alim)
        assert vr <= 0.95 + 1e-9 and ar <= 0.95 + 1e-9
        assert max(vr, ar) > 0.94  # a binding joint reaches its (scaled) limit
        fd = np.diff(q, axis=0) / 0.001
        assert np.abs(fd - 0.5 * (qd[1:] + qd[:-1])).max() < 1e-3


def test_toppra_spline_respects_limits_between_grid_points():
    rng = np.random.default_rng(8)
    vlim, alim = np.array([2.0, 2.0, 3.0, 3.0, 3.0, 3.0]), np.array([2.5, 2.5, 4.0, 8.0, 8.0, 8.0])
    wp = np.cumsum(rng.uniform(-1, 1, (4, 6)), axis=0)
    tp = parameterize(spline_path(wp, 0.1), vlim, alim, 0.05, 400)
    t = sample_times(tp.duration, 0.0005)
    q, qd, qdd = tp.evaluate(t)
    assert np.allclose(q[0], wp[0]) and np.allclose(q[-1], wp[-1], atol=1e-6)
    vr, ar = limit_ratios(qd, qdd, vlim, alim)
    assert vr <= 1.0 and ar <= 1.0
    assert ar > 0.8  # time-optimal-ish: some joint works near its acceleration limit


def test_hand_pre_shaping_profile():
    q0, q1 = np.zeros(4), np.array([1.0, -0.5, 0.0, 0.2])
    vlim = np.full(4, 2.0)
    tr = hand_pre_shaping(("a", "b", "c", "d"), q0, q1, vlim, 0.5, 0.3, 0.01)
    assert np.allclose(tr.q[0], q0) and np.allclose(tr.q[-1], q1)
    assert np.abs(tr.qd).max() <= 0.5 * 2.0 + 1e-9
    assert tr.duration >= 0.3
    still = hand_pre_shaping(("a",), np.zeros(1), np.zeros(1), np.ones(1), 0.5, 0.3, 0.01)
    assert still.duration == 0.0


# --------------------------------------------------------------------------- planning


def _proposal(robot, sc, pid="p") -> ProposalTarget:
    return ProposalTarget(pid, sc.world_T_root, sc.hand_q)


def test_planned_trajectory_is_valid_in_an_independent_mujoco_check(robot, planner):
    rng = np.random.default_rng(9)
    checker = MujocoChecker(robot)
    open_q = np.asarray(robot.cfg.hand.named_poses["open"])
    for i in range(3):
        sc, _ = reachable_scenario(rng, planner, i)
        res = planner.select(sc.start_q, open_q, [_proposal(robot, sc)], sc.planning_scene(0.005))
        assert res.success, res.rejections
        assert res.status == STATUS_OK and res.index == 0 and res.rejections == []
        arm, hand = res.arm, res.hand
        # reaches the target pose, starts at the start state, holds while the hand pre-shapes
        reached = planner.flange_pose(arm.q[-1]) @ robot.cfg.flange_T_root.matrix()
        dp, dr = pose_error(reached, sc.world_T_root)
        assert dp < 1e-4 and dr < 1e-3
        assert np.allclose(arm.q[0], sc.start_q)
        assert np.all(np.diff(arm.t) > 0)
        moving = np.abs(arm.q - sc.start_q).max(axis=1) > 1e-9
        t_move = arm.t[np.argmax(moving)]
        assert t_move >= hand.t[np.argmax(np.abs(hand.q - hand.q[-1]).max(axis=1) < 1e-9)] - 1e-9
        assert np.allclose(hand.q[-1], sc.hand_q) and hand.duration == pytest.approx(arm.duration)
        # limits (planner's derivatives and finite differences) and collisions (own re-check + MuJoCo)
        vlim, alim = robot.cfg.arm.velocity_limits, robot.cfg.arm.acceleration_limits
        assert max(limit_ratios(arm.qd, arm.qdd, vlim, alim)) <= 1.0
        assert max(fd_limit_ratios(arm, vlim, alim)) <= 1.0 + 1e-6
        assert check_trajectory(planner, res.attempt.arm, sc.hand_q)["collision_index"] is None
        checker.set_scene(sc.primitives())
        chk = checker.check(arm, hand)
        assert chk.collision_free, chk.pairs
        assert chk.n_states > 100


def test_mujoco_checker_detects_a_collision(robot, planner):
    """The independent check is not vacuous: a trajectory through a box is caught."""
    checker = MujocoChecker(robot)
    rng = np.random.default_rng(10)
    sc, _ = reachable_scenario(rng, planner, 0)
    open_q = np.asarray(robot.cfg.hand.named_poses["open"])
    res = planner.select(sc.start_q, open_q, [_proposal(robot, sc)], sc.planning_scene(0.005))
    assert res.success
    mid = res.arm.q[len(res.arm.q) // 2]
    planner.collision.set_hand(sc.hand_q)
    T = planner.flange_pose(mid)
    from dex_planning.verify import Primitive

    block = np.eye(4)
    block[:3, 3] = T[:3, 3]
    checker.set_scene([Primitive("block", "box", (0.05, 0.05, 0.05), block)])
    chk = checker.check(res.arm, res.hand)
    assert not chk.collision_free and chk.max_penetration > 0.01


def test_typed_failures_never_return_a_trajectory(robot, planner):
    rng = np.random.default_rng(11)
    sc, _ = reachable_scenario(rng, planner, 0)
    open_q = np.asarray(robot.cfg.hand.named_poses["open"])
    pre = np.asarray(robot.cfg.hand.named_poses["pre_shape"])
    scene = sc.planning_scene(0.005)
    good = _proposal(robot, sc, "good")
    far = np.eye(4)
    far[:3, 3] = [3.0, 3.0, 1.0]
    nan = sc.world_T_root.copy()
    nan[1, 3] = np.nan
    inside = np.eye(4)
    inside[:3, 3] = [0.0, 0.5, -0.3]  # under the table top
    props = [ProposalTarget("far", far, pre), ProposalTarget("nan", nan, pre),
             ProposalTarget("under", inside, pre), InvalidInputError("could not convert"), good]
    res = planner.select(sc.start_q, open_q, props, scene)
    assert res.success and res.index == 4
    reasons = [(r.index, r.reason) for r in res.rejections]
    assert reasons[0] == (0, REASON_NO_IK)
    assert reasons[1] == (1, REASON_INVALID)
    assert reasons[2][0] == 2 and reasons[2][1] in (REASON_COLLISION_AT_GOAL, REASON_NO_IK)
    assert reasons[3] == (3, REASON_INVALID)
    # every proposal infeasible: no trajectory
    res = planner.select(sc.start_q, open_q, props[:4], scene)
    assert not res.success and res.status == STATUS_NO_FEASIBLE and res.arm is None and res.hand is None
    # a wall around the pre-grasp: collision at the goal
    centre = (sc.world_T_root @ np.r_[robot.cfg.hand.palm.center, 1.0])[:3]
    walled = PlanningScene(scene.boxes + (Box.axis_aligned("wall", centre, (0.2, 0.2, 0.2)),), scene.cloud)
    res = planner.select(sc.start_q, open_q, [good], walled)
    assert not res.success and res.rejections[0].reason == REASON_COLLISION_AT_GOAL and res.arm is None
    # no time to search (straight line and via states disabled): planner timeout
    slow = CpuPlanner(robot, override(default_config(), {"search.try_direct": False, "search.via_lifts": [],
                                                          "proposal_timeout": 1e-6}))
    res = slow.select(sc.start_q, open_q, [good], scene)
    assert not res.success and res.rejections[0].reason == REASON_PLANNER_TIMEOUT and res.arm is None
    # budget used up before trying: not_tried, status timeout
    res = planner.select(sc.start_q, open_q, [good, good], scene, time_budget=1e-9)
    assert res.status == STATUS_TIMEOUT and {r.reason for r in res.rejections} == {REASON_NOT_TRIED}
    assert len(res.rejections) == 2 and res.arm is None


def test_invalid_start_states(robot, planner):
    open_q = np.asarray(robot.cfg.hand.named_poses["open"])
    target = ProposalTarget("p", np.eye(4), np.asarray(robot.cfg.hand.named_poses["pre_shape"]))
    scene = default_scene()
    bad = planner.home.copy()
    bad[0] = np.nan
    assert planner.select(bad, open_q, [target], scene).status == STATUS_INVALID
    out = planner.home.copy()
    out[2] = 4.0  # elbow beyond its +-pi limit
    res = planner.select(out, open_q, [target], scene)
    assert res.status == STATUS_INVALID and "elbow_joint" in res.message
    assert planner.select(planner.home, open_q[:3], [target], scene).status == STATUS_INVALID
    # a measured joint a little past its stop (pressed against it) is clipped onto it; farther is refused
    lo = planner.hand_lower
    j = int(np.argmax(lo == 0.0)) if np.any(lo == 0.0) else 0
    pressed = np.clip(open_q, planner.hand_lower, planner.hand_upper).copy()
    pressed[j] = lo[j] - 0.5 * START_LIMIT_TOL
    q, h = planner.check_start(planner.home, pressed)
    assert h[j] == lo[j] and np.array_equal(q, planner.home)
    pressed[j] = lo[j] - 2 * START_LIMIT_TOL
    res = planner.select(planner.home, pressed, [target], scene)
    assert res.status == STATUS_INVALID and "outside its limits" in res.message and planner.hand_joints[j] in res.message
    # start inside an obstacle
    hand_pos = (planner.flange_pose(planner.home) @ robot.cfg.flange_T_root.matrix())[:3, 3]
    blocked = default_scene(boxes=(Box.axis_aligned("on_hand", hand_pos, (0.1, 0.1, 0.1)),))
    res = planner.select(planner.home, open_q, [target], blocked)
    assert res.status == STATUS_INVALID and "start state in collision" in res.message and res.arm is None
    assert planner.select(planner.home, open_q, [], scene).status == STATUS_INVALID


def _robot_only(pairs) -> bool:
    return bool(pairs) and not any(touches_environment(p) for p in pairs)


def test_a_start_state_in_self_collision_is_left_by_a_short_move(robot, planner):
    """A start just inside a self-collision of the planner's model (where a lift can leave the real
    or simulated arm): the trajectory first moves straight out of it, meeting no other pair, then
    plans as usual; with the escape turned off, or with the environment in the contact, refused."""
    rng = np.random.default_rng(4)
    open_q = np.asarray(robot.cfg.hand.named_poses["open"])
    sc, _ = reachable_scenario(rng, planner, 0)
    scene = sc.planning_scene(0.005)
    planner.set_scene(scene)
    start = None
    for q in _random_arm(rng, planner, 500):  # the boundary between home and a self-colliding state
        if not _robot_only(planner.start_collisions(q, open_q)):
            continue
        free, hit = planner.home.copy(), q.copy()
        for _ in range(30):
            mid = 0.5 * (free + hit)
            free, hit = (free, mid) if planner.start_collisions(mid, open_q) else (mid, hit)
        if _robot_only(planner.start_collisions(hit, open_q)):
            start = hit
            break
    assert start is not None
    pairs = set(planner.start_collisions(start, open_q))
    res = planner.select(start, open_q, [_proposal(robot, sc)], scene)
    assert res.success, (res.message, res.rejections)
    assert "start-state self-collision" in res.message
    arm, hand = res.arm, res.hand
    assert np.allclose(arm.q[0], start) and np.all(np.diff(arm.t) > 0)
    assert hand.duration == pytest.approx(arm.duration)
    vlim, alim = robot.cfg.arm.velocity_limits, robot.cfg.arm.acceleration_limits
    assert max(fd_limit_ratios(arm, vlim, alim)) <= 1.0 + 1e-6
    # the escape: the hand holds; the arm meets only the start's pairs until it is free
    first_free = next(k for k, q in enumerate(arm.q) if not planner.start_collisions(q, open_q))
    assert 0 < first_free and np.abs(arm.q[first_free] - start).max() <= max(planner.cfg.search.start_escape) + 1e-9
    assert np.allclose(hand.q[: first_free + 1], open_q)
    for q in arm.q[:first_free]:
        got = {tuple(p) for p in planner.start_collisions(q, open_q)}
        assert got <= pairs | {(b, a) for a, b in pairs}
    # from where the escape ends, the plan is the ordinary one (free in the model's own dense check)
    assert np.allclose(res.attempt.arm.q[0], arm.q[np.argmin(np.abs(arm.t - (arm.duration - res.attempt.arm.duration)))])
    assert check_trajectory(planner, res.attempt.arm, sc.hand_q)["collision_index"] is None
    off = CpuPlanner(robot, replace(planner.cfg, search=replace(planner.cfg.search, start_escape=())))
    res = off.select(start, open_q, [_proposal(robot, sc)], scene)
    assert res.status == STATUS_INVALID and "start state in collision" in res.message and res.arm is None


def test_preshape_collision_at_start(robot, planner):
    """A block where a fingertip goes while pre-shaping (but not where it is): typed rejection."""
    m = robot.model
    d = mujoco.MjData(m)
    open_q = np.asarray(robot.cfg.hand.named_poses["open"])
    pre = np.asarray(robot.cfg.hand.named_poses["pre_shape"])
    tip = robot.cfg.hand.contact_points[0].body  # the thumb
    pos = {}
    for name, hq in (("open", open_q), ("pre", pre)):
        d.qpos[:] = m.qpos0
        d.qpos[[m.jnt_qposadr[m.joint(j).id] for j in robot.cfg.arm.joints]] = planner.home
        d.qpos[[m.jnt_qposadr[m.joint(j).id] for j in robot.cfg.hand.joints]] = hq
        mujoco.mj_kinematics(m, d)
        pos[name] = d.xpos[m.body(tip).id].copy()
    assert np.linalg.norm(pos["pre"] - pos["open"]) > 0.02
    scene = default_scene(boxes=(Box.axis_aligned("pebble", pos["pre"], (0.012, 0.012, 0.012)),))
    planner.set_scene(scene)
    if planner.start_collisions(planner.home, open_q):
        pytest.skip("the open hand already touches the pebble for this hand")
    target = ProposalTarget("p", planner.flange_pose(planner.home) @ robot.cfg.flange_T_root.matrix(), pre)
    res = planner.select(planner.home, open_q, [target], scene)
    assert not res.success and res.rejections[0].reason == REASON_PRESHAPE_COLLISION


# --------------------------------------------------------------------------- config and scene


def test_config_validation_and_overrides(tmp_path):
    cfg = default_config()
    assert validate(cfg) is cfg
    with pytest.raises(PlanningConfigError, match="backend"):
        validate(replace(cfg, backend="gpu"))
    with pytest.raises(PlanningConfigError, match="collision.env_margin"):
        validate(replace(cfg, collision=replace(cfg.collision, env_margin=-1.0)))
    c2 = override(cfg, {"collision.env_margin": 0.02, "search.planner": "AORRTC", "search.via_lifts": [0.1]})
    assert c2.collision.env_margin == 0.02 and c2.search.planner == "AORRTC" and c2.search.via_lifts == (0.1,)
    with pytest.raises(PlanningConfigError, match="collision.nope"):
        override(cfg, {"collision.nope": 1})
    with pytest.raises(PlanningConfigError, match="must be a number"):
        override(cfg, {"time_budget": "fast"})
    path = tmp_path / "planner.yaml"
    path.write_text("backend: cpu\ncollision:\n  env_margin: 0.015\ntiming.sample_dt: 0.05\n")
    loaded = load_config(path)
    assert loaded.collision.env_margin == 0.015 and loaded.timing.sample_dt == 0.05
    path.write_text("search:\n  planner: PRM\n")
    with pytest.raises(PlanningConfigError, match="search.planner"):
        load_config(path)


def test_scene_validation():
    with pytest.raises(InvalidInputError, match="size"):
        Box.axis_aligned("b", (0, 0, 0), (0.1, -0.1, 0.1))
    with pytest.raises(InvalidInputError, match="unique"):
        PlanningScene((table_box(), table_box()))
    cloud = np.array([[0.0, 0.5, 0.1], [np.nan, 0.0, 0.0], [0.1, 0.5, 0.1]])
    assert PlanningScene(cloud=cloud).n_points == 2
    assert PlanningScene(cloud=np.zeros((0, 3))).cloud is None
    top = table_box()
    assert top.world_T_box[2, 3] + top.size[2] / 2 == pytest.approx(0.0)


def test_margins_dataclass_defaults():
    m = Margins()
    assert m.env == m.self == m.near_self == 0.0


def test_closed_form_ik_noise_on_stdout_is_silenced_and_stdout_comes_back(capfd):
    """ur-analytic-ik prints a warning per rejected branch on std::cout (file descriptor 1):
    inside ``silenced_stdout`` such writes vanish, Python's buffered output before the block is
    not lost, and fd 1 works again afterwards (also after an exception inside the block)."""
    import os
    import sys

    from dex_planning.ik import silenced_stdout

    print("before", end="")  # buffered: must be flushed, not swallowed
    with silenced_stdout():
        os.write(1, b"Warning: Detected and filtered incorrect IK solution\n")
    with pytest.raises(RuntimeError):
        with silenced_stdout():
            os.write(1, b"more noise\n")
            raise RuntimeError("inside")
    sys.stdout.flush()
    os.write(1, b"|after\n")
    out = capfd.readouterr().out
    assert out == "before|after\n", out
