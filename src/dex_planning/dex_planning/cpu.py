"""The CPU backend: closed-form IK + Pinocchio/coal collision + OMPL + TOPP-RA + dense re-check.

Per proposal (:meth:`CpuPlanner.plan_to_pose`):

1. IK: all solutions of the flange target within the planning bounds (``home +- joint_window``,
   intersected with the model limits and widened to include the start), closest to the start first
   (:mod:`dex_planning.ik`); none -> ``no_ik``.
2. Goal check with the hand at its pre-grasp shape (``endpoint`` margin); none free ->
   ``collision_at_goal``.
3. Search: the straight joint-space line to each goal; else two/three-segment paths through states
   with the hand lifted above the start or the goal, or backed off along the palm normal
   (:meth:`CpuPlanner._via`); else OMPL (RRTConnect or AORRTC) to all goal states at once, then
   OMPL's shortcutting/smoothing. Nothing within the deadline -> ``planner_timeout``.
4. Time parameterisation (:mod:`dex_planning.timing`): TOPP-RA on one smooth spline through the
   waypoints; straight segments (and the fallback when the spline's re-check fails) get the exact
   time-optimal trapezoid, rest to rest, so the geometry is exactly the checked polyline.
5. Dense re-check of the final trajectory at ``check_margin`` with a displacement bound of
   ``check_step`` between checked states, and of the limits at ``check_dt``.

The search space is scaled: coordinate ``x_i = R_i q_i`` with ``R_i`` (:func:`lever_arms`) a bound
on how far any robot point can be from joint ``i``'s axis. A joint step ``dq`` then moves no robot
point further than ``sum_i R_i |dq_i|`` [m], so OMPL's metric, its motion-check resolution
(``motion_step``) and the dense re-check's sampling (``check_step``) are in metres of robot motion.

Margins: ``plan`` level (``env_margin``/``self_margin``; ``near_self_margin`` for links at most two
joints apart) everywhere except within
``endpoint_radius`` of the start and the goals, where the ``endpoint`` level applies (the pre-grasp
is deliberately close to the object; the start may be close to where the last motion ended). Geoms
moved only by the first joint (the shoulder, spinning about the base axis) keep at most half their
clearance at the home pose as margin, so that the base resting on the table is not a collision.
"""

from __future__ import annotations

import time

import coal
import numpy as np
import pinocchio as pin

from dex_description.compose import Robot
from dex_planning.collision import ArmCollisionModel, Margins
from dex_planning.config import PlannerConfig
from dex_planning.errors import PlanningError
from dex_planning.ik import ArmIK, wrap_into
from dex_planning.interface import (
    REASON_COLLISION_AT_GOAL,
    REASON_NO_IK,
    REASON_PLANNER_TIMEOUT,
    PlanAttempt,
    PlanStats,
    Trajectory,
)
from dex_planning.planner import ArmPlanner, _pairs_text
from dex_planning.scene import PlanningScene
from dex_planning.timing import (
    TimingError,
    TrapezoidSegment,
    limit_ratios,
    parameterize,
    sample_times,
    spline_path,
)

_OMPL_SEEDED = False


def lever_arms(model: ArmCollisionModel) -> np.ndarray:
    """``R`` (6,) [m]: an upper bound, over all configurations, of the distance from joint ``i``'s
    axis to any robot collision geometry it moves (hand included at the current shape).

    Bound: ``R_i = max_{k >= i} (sum_{m=i+1..k} |offset_m| + r_k)`` with ``offset_m`` the
    translation from joint m-1 to joint m and ``r_k`` the radius of joint k's own geometry about its
    origin.
    """
    n = len(model.joint_names)
    offsets = np.array([np.linalg.norm(model.model.jointPlacements[k].translation) for k in range(1, n + 1)])
    radius = np.zeros(n + 1)
    for obj in model.geom_model.geometryObjects:
        j = obj.parentJoint
        if j == 0 or obj.name.startswith("env/"):
            continue
        geom = obj.geometry
        geom.computeLocalAABB()
        aabb = geom.aabb_local
        corners = np.array([[x, y, z] for x in (aabb.min_[0], aabb.max_[0]) for y in (aabb.min_[1], aabb.max_[1])
                            for z in (aabb.min_[2], aabb.max_[2])])
        pts = corners @ obj.placement.rotation.T + obj.placement.translation
        radius[j] = max(radius[j], float(np.linalg.norm(pts, axis=1).max()))
    R = np.zeros(n)
    for i in range(1, n + 1):
        best, acc = radius[i], 0.0
        for k in range(i + 1, n + 1):
            acc += offsets[k - 1]
            best = max(best, acc + radius[k])
        R[i - 1] = best
    return np.maximum(R, 1e-3)


class CpuPlanner(ArmPlanner):
    """CPU backend (default). See the module docstring for the algorithm."""

    backend = "cpu"

    def __init__(self, robot: Robot, cfg: PlannerConfig | None = None):
        super().__init__(robot, cfg)
        c = self.cfg.collision
        self.levels = {
            "plan": Margins(c.env_margin, c.self_margin, c.near_self_margin),
            "endpoint": Margins(c.endpoint_margin, min(c.endpoint_margin, c.self_margin),
                                min(c.endpoint_margin, c.near_self_margin)),
            "exact": Margins(c.check_margin, min(c.check_margin, c.self_margin), min(c.check_margin, c.near_self_margin)),
        }
        self.collision = ArmCollisionModel(robot, c.hand_geometry, self.levels)
        self.ik = ArmIK(self.collision, self.cfg.ik)
        self.home = np.asarray(robot.cfg.arm.named_poses["home"], dtype=np.float64)
        self.R = lever_arms(self.collision)
        self.set_scene(PlanningScene())
        self._warm_up()

    def _warm_up(self) -> None:
        """Import OMPL and TOPP-RA and run one tiny parameterisation, so that the first request
        does not pay their start-up (~0.5 s)."""
        import ompl.geometric  # noqa: F401

        a = self.home
        b = self.home + 0.01
        tp = parameterize(spline_path(np.stack([a, b]), None), self.vlim, self.alim, 0.05, 20)
        tp.evaluate(np.array([0.0, tp.duration]))

    # ------------------------------------------------------------------ scene and checks

    def set_scene(self, scene: PlanningScene) -> None:
        if scene.cloud is not None and scene.cloud_resolution != self.cfg.collision.cloud_resolution:
            scene = PlanningScene(scene.boxes, scene.cloud, self.cfg.collision.cloud_resolution)
        self.collision.set_scene(scene, self.levels)
        self._base_joint_margins()

    def _base_joint_margins(self) -> None:
        """Clip the margins of (joint-1 geom, environment) pairs to half their clearance at home."""
        cm = self.collision
        gm = cm.geom_model
        gd = pin.GeometryData(gm)
        pin.updateGeometryPlacements(cm.model, cm.data, gm, gd, self.home)
        for p, pair in enumerate(gm.collisionPairs):
            a, b = gm.geometryObjects[pair.first], gm.geometryObjects[pair.second]
            if not (a.parentJoint == 1 and b.parentJoint == 0 and b.name.startswith("env/")):
                continue
            req = coal.DistanceRequest()
            res = coal.DistanceResult()
            d = coal.distance(a.geometry, gd.oMg[pair.first], b.geometry, gd.oMg[pair.second], req, res)
            for g in cm._gdata.values():
                r = g.collisionRequests[p]
                r.security_margin = float(min(r.security_margin, max(0.0, 0.5 * d)))

    def flange_pose(self, q):
        return self.collision.flange_pose(q)

    def start_collisions(self, start_q, start_hand_q):
        self.collision.set_hand(start_hand_q)
        return self.collision.colliding_pairs(start_q, "exact")

    def preshape_collisions(self, start_q, hand_from, hand_to):
        n = self.cfg.collision.hand_shape_samples
        for s in np.linspace(0.0, 1.0, n)[1:]:
            self.collision.set_hand(hand_from + s * (hand_to - hand_from))
            if self.collision.in_collision(start_q, "exact"):
                return self.collision.colliding_pairs(start_q, "exact")
        return []

    def bounds(self, start_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Planning bounds (6,), (6,): ``home +- joint_window`` within the model limits, widened to the start."""
        w = self.cfg.search.joint_window
        lo = np.maximum(self.home - w, self.arm_lower)
        hi = np.minimum(self.home + w, self.arm_upper)
        return np.minimum(lo, start_q), np.maximum(hi, start_q)

    # ------------------------------------------------------------------ planning

    def goal_states(self, start_q: np.ndarray, world_T_flange: np.ndarray, hand_q: np.ndarray,
                    stats: PlanStats) -> list[np.ndarray] | PlanAttempt:
        """IK solutions in the planning bounds, collision-free with the hand at ``hand_q``
        (``endpoint`` margin), closest to the start first (at most ``max_goals``); or the typed
        failure (``no_ik``, ``collision_at_goal``)."""
        t0 = time.monotonic()
        cm = self.collision
        cm.set_hand(hand_q)
        self.R = lever_arms(cm)  # the hand's reach about the last joints depends on its shape
        lo, hi = self.bounds(start_q)
        sols = self.ik.solve(world_T_flange, lo, hi, start_q)
        stats.n_ik_solutions = len(sols)
        if not sols:
            wide = self.ik.solve(world_T_flange, self.arm_lower, self.arm_upper, start_q)
            stats.ik_s = time.monotonic() - t0
            why = (f"{len(wide)} solution(s) within the model limits but none within the planning window "
                   f"home +- {self.cfg.search.joint_window:.2f} rad") if wide else "no IK solution within the joint limits"
            return PlanAttempt(False, REASON_NO_IK, why, stats=stats)
        goals = [q for q in sols if not cm.in_collision(q, "endpoint")][: self.cfg.max_goals]
        stats.n_goals = len(goals)
        stats.ik_s = time.monotonic() - t0
        if not goals:
            pairs = cm.colliding_pairs(sols[0], "endpoint")
            return PlanAttempt(False, REASON_COLLISION_AT_GOAL,
                               f"all {len(sols)} IK solution(s) collide, e.g. {_pairs_text(pairs)}", stats=stats)
        return goals

    def plan_to_pose(self, start_q, world_T_flange, hand_q, deadline) -> PlanAttempt:
        stats = PlanStats()
        goals = self.goal_states(start_q, world_T_flange, hand_q, stats)
        if isinstance(goals, PlanAttempt):
            return goals
        lo, hi = self.bounds(start_q)
        t1 = time.monotonic()
        path = None
        if self.cfg.search.try_direct:
            for g in goals:
                if self._motion_valid(start_q, g, start_q, goals):
                    path = np.stack([start_q, g])
                    stats.direct = True
                    break
        if path is None and self.cfg.search.via_lifts:
            path = self._via(start_q, goals, world_T_flange, lo, hi)
            stats.via = path is not None
        if path is None:
            path = self._ompl(start_q, goals, lo, hi, deadline)
        stats.search_s = time.monotonic() - t1
        if path is None:
            return PlanAttempt(False, REASON_PLANNER_TIMEOUT,
                               f"no collision-free path to {len(goals)} goal(s) within {max(0.0, deadline - t1):.3f} s",
                               stats=stats)
        stats.n_waypoints = len(path)
        stats.path_length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        traj, why = self._time_and_check(path, stats)
        if traj is None:
            return PlanAttempt(False, REASON_PLANNER_TIMEOUT, why, stats=stats)
        return PlanAttempt(True, "", "ok", traj, path[-1].copy(), path, stats)

    def _valid(self, q: np.ndarray, ends: list[np.ndarray]) -> bool:
        """Planner validity: ``plan`` margin, or ``endpoint`` margin near the start/goals."""
        cm = self.collision
        if not cm.in_collision(q, "plan"):
            return True
        x = self.R * q
        r = self.cfg.collision.endpoint_radius
        if any(np.linalg.norm(x - self.R * e) < r for e in ends):
            return not cm.in_collision(q, "endpoint")
        return False

    def _motion_valid(self, a: np.ndarray, b: np.ndarray, start: np.ndarray, goals: list[np.ndarray]) -> bool:
        """Straight line ``a -> b`` checked every ``motion_step`` of the scaled metric (bisection order)."""
        dist = float(np.linalg.norm(self.R * (b - a)))
        n = int(np.ceil(dist / self.cfg.collision.motion_step))
        if n <= 1:
            return True
        ends = [start] + list(goals)
        order = _bisection_order(n)
        for k in order:
            if not self._valid(a + (b - a) * (k / n), ends):
                return False
        return True

    def _shifted(self, q: np.ndarray, offset: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
        """Joints that translate the flange by ``offset`` (3,) [m] (world frame, same orientation)
        from its pose at ``q``, found by Newton steps from ``q``; None if unreachable."""
        T = self.collision.flange_pose(q)
        T[:3, 3] += offset
        v = self.ik.polish(T, q, self.cfg.ik.polish_iters)
        return None if v is None else wrap_into(v, lo, hi, q)

    def _via(self, start_q, goals, world_T_flange, lo, hi) -> np.ndarray | None:
        """Two- and three-segment paths through nearby Cartesian offsets of the end states, the
        moves a person would try first: lift the hand above the start (retreat) and/or approach the
        goal from above it or from behind it along the palm normal (the pre-grasp's approach axis),
        for each distance in ``search.via_lifts`` and the two goals closest to the start."""
        ends = [start_q] + list(goals)
        up = np.array([0.0, 0.0, 1.0])
        palm_normal = (world_T_flange @ self.flange_T_root)[:3, :3] @ self.robot.cfg.hand.palm.normal
        for dist in self.cfg.search.via_lifts:
            s_up = self._shifted(start_q, dist * up, lo, hi)
            if s_up is not None and not self._valid(s_up, ends):
                s_up = None
            for g in goals[:2]:
                near_goal = [self._shifted(g, dist * up, lo, hi), self._shifted(g, -dist * palm_normal, lo, hi)]
                near_goal = [v for v in near_goal if v is not None and self._valid(v, ends)]
                candidates = [[start_q, v, g] for v in near_goal]
                if s_up is not None:
                    candidates.append([start_q, s_up, g])
                    candidates += [[start_q, s_up, v, g] for v in near_goal]
                for cand in candidates:
                    if all(self._motion_valid(a, b, start_q, goals) for a, b in zip(cand[:-1], cand[1:])):
                        return _dedupe(np.stack(cand))
        return None

    def _ompl(self, start_q, goals, lo, hi, deadline) -> np.ndarray | None:
        from ompl import base as ob
        from ompl import geometric as og
        from ompl import util as ou

        global _OMPL_SEEDED
        if not _OMPL_SEEDED:
            ou.RNG.setSeed(int(self.cfg.search.seed))
            ou.setLogLevel(ou.LOG_WARN)
            _OMPL_SEEDED = True
        R = self.R
        n = len(start_q)
        space = ob.RealVectorStateSpace(n)
        bounds = ob.RealVectorBounds(n)
        for i in range(n):
            bounds.setLow(i, float(R[i] * lo[i]))
            bounds.setHigh(i, float(R[i] * hi[i]))
        space.setBounds(bounds)
        ss = og.SimpleSetup(space)
        ends = [start_q] + list(goals)

        def valid(state) -> bool:
            q = np.array([state[i] for i in range(n)]) / R
            return self._valid(q, ends)

        ss.setStateValidityChecker(valid)
        si = ss.getSpaceInformation()
        si.setStateValidityCheckingResolution(self.cfg.collision.motion_step / space.getMaximumExtent())
        start = si.allocState()
        for i in range(n):
            start[i] = float(R[i] * start_q[i])
        ss.setStartState(start)
        goal = ob.GoalStates(si)
        for g in goals:
            s = si.allocState()
            for i in range(n):
                s[i] = float(R[i] * g[i])
            goal.addState(s)
        ss.setGoal(goal)
        planner = og.AORRTC(si) if self.cfg.search.planner == "AORRTC" else og.RRTConnect(si)
        if self.cfg.search.range > 0:
            planner.setRange(float(self.cfg.search.range))
        ss.setPlanner(planner)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        status = ss.solve(remaining)
        if status.getStatus() != ob.PlannerStatus.EXACT_SOLUTION:
            return None
        path = ss.getSolutionPath()
        if self.cfg.search.simplify:
            og.PathSimplifier(si).simplify(path, float(self.cfg.search.simplify_time))
        out = np.array([[path.getState(k)[i] for i in range(n)] for k in range(path.getStateCount())]) / R
        return _dedupe(out)

    # ------------------------------------------------------------------ timing + dense re-check

    def _time_and_check(self, path: np.ndarray, stats: PlanStats) -> tuple[Trajectory | None, str]:
        tcfg = self.cfg.timing
        t0 = time.monotonic()
        variants = ["smooth", "segments"] if (tcfg.smooth and len(path) > 2) else ["segments"]
        why = ""
        for variant in variants:
            try:
                traj, vr, ar = self._parameterize(path, variant)
            except TimingError as exc:
                why = f"time parameterisation failed: {exc}"
                continue
            t1 = time.monotonic()
            stats.timing_s += t1 - t0
            bad = self._dense_collision(traj)
            stats.check_s += time.monotonic() - t1
            t0 = time.monotonic()
            if bad is not None:
                why = f"dense re-check of the {variant} trajectory: collision at t = {traj.t[bad]:.3f} s"
                continue
            stats.smooth = variant == "smooth"
            stats.max_vel_ratio, stats.max_acc_ratio = vr, ar
            stats.dense_check_ok = True
            return traj, ""
        return None, why

    def _parameterize(self, path: np.ndarray, variant: str) -> tuple[Trajectory, float, float]:
        """``smooth``: TOPP-RA on one spline through the waypoints; ``segments``: exact trapezoids
        per straight segment (rest to rest). Retried with a larger limit margin if the dense check
        of the limits fails."""
        tcfg = self.cfg.timing
        margin = tcfg.limit_margin
        for _attempt in range(3):
            pieces = []
            if variant == "smooth":
                gp = spline_path(path, 0.1)
                ss = np.linspace(*gp.path_interval, 64)
                scaled_len = float((np.abs(np.diff(gp(ss), axis=0)) @ self.R).sum())
                n_grid = int(max(tcfg.gridpoints_min, np.ceil(tcfg.gridpoints_per_unit * scaled_len)))
                pieces.append(parameterize(gp, self.vlim, self.alim, margin, n_grid))
            else:
                pieces += [TrapezoidSegment.plan(a, b, self.vlim, self.alim, margin) for a, b in zip(path[:-1], path[1:])]
            ts, qs, qds, qdds = [], [], [], []
            t_off = 0.0
            for piece in pieces:
                t = sample_times(piece.duration, tcfg.check_dt)
                q, qd, qdd = piece.evaluate(t)
                if ts:
                    t, q, qd, qdd = t[1:], q[1:], qd[1:], qdd[1:]
                ts.append(t + t_off)
                qs.append(q)
                qds.append(qd)
                qdds.append(qdd)
                t_off += piece.duration
            traj = Trajectory(self.arm_joints, np.concatenate(ts), np.concatenate(qs), np.concatenate(qds),
                              np.concatenate(qdds))
            traj.q[0], traj.q[-1] = path[0], path[-1]
            vr, ar = limit_ratios(traj.qd, traj.qdd, self.robot.cfg.arm.velocity_limits,
                                  self.robot.cfg.arm.acceleration_limits)
            if vr <= 1.0 and ar <= 1.0 and _within(traj.q, self.arm_lower, self.arm_upper):
                return traj, vr, ar
            margin = min(0.45, 2 * margin + 0.02)
        raise TimingError(f"limits exceeded after 3 attempts (|qd|/vlim = {vr:.3f}, |qdd|/alim = {ar:.3f})")

    def _dense_collision(self, traj: Trajectory) -> int | None:
        """Index of the first trajectory sample whose neighbourhood collides at ``exact`` level, or None.

        Between consecutive dense time samples, extra states are interpolated so that no robot point
        moves more than ``check_step`` between two checked states.
        """
        cm = self.collision
        step = self.cfg.collision.check_step
        q = traj.q
        disp = np.abs(np.diff(q, axis=0)) @ self.R  # bound of the displacement per sample step [m]
        cum = np.concatenate([[0.0], np.cumsum(disp)])
        n = max(1, int(np.ceil(cum[-1] / step)))
        targets = np.linspace(0.0, cum[-1], n + 1)
        idx = np.clip(np.searchsorted(cum, targets, side="right") - 1, 0, len(q) - 2)
        span = np.where(disp[idx] > 0, (targets - cum[idx]) / np.where(disp[idx] > 0, disp[idx], 1.0), 0.0)
        states = q[idx] + (q[idx + 1] - q[idx]) * np.clip(span, 0, 1)[:, None]
        states = np.concatenate([states, q[-1:]])
        k = cm.first_collision(states, "exact")
        if k < 0:
            return None
        return int(min(idx[min(k, len(idx) - 1)], len(q) - 1))


def _within(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    return bool(np.all(q >= lo - 1e-9) and np.all(q <= hi + 1e-9))


def _dedupe(path: np.ndarray) -> np.ndarray:
    keep = [0] + [k for k in range(1, len(path)) if np.abs(path[k] - path[k - 1]).max() > 1e-9]
    return path[keep]


def _bisection_order(n: int) -> list[int]:
    """Interior indices 1..n-1 in coarse-to-fine (bisection) order, so a blocked line fails early."""
    order, seen = [], set()
    queue = [(0, n)]
    while queue:
        nxt = []
        for a, b in queue:
            if b - a < 2:
                continue
            m = (a + b) // 2
            if m not in seen:
                seen.add(m)
                order.append(m)
            nxt.extend([(a, m), (m, b)])
        queue = nxt
    return order


def check_trajectory(planner: CpuPlanner, traj: Trajectory, hand_q: np.ndarray, level: str = "exact") -> dict:
    """Re-check a finished trajectory (used by tests and the benchmark): collision at ``level`` with
    the hand at ``hand_q`` every ``check_step``, and the limit ratios. Returns a dict."""
    planner.collision.set_hand(hand_q)
    planner.R = lever_arms(planner.collision)
    bad = planner._dense_collision(traj)
    vr, ar = limit_ratios(traj.qd, traj.qdd, planner.robot.cfg.arm.velocity_limits,
                          planner.robot.cfg.arm.acceleration_limits)
    return {"collision_index": bad, "max_vel_ratio": vr, "max_acc_ratio": ar,
            "within_limits": _within(traj.q, planner.arm_lower, planner.arm_upper)}


__all__ = ["CpuPlanner", "lever_arms", "check_trajectory", "PlanningError"]
