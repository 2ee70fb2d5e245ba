"""The backend-independent part: proposal validation, the selection loop, the hand's pre-shaping.

The selection loop (BODex's real-robot procedure): for proposals in rank order, IK to the
pre-grasp wrist pose (all solutions, filtered by limits and collisions, closest to the current
state first), plan, and stop at the first success within the time budget; every proposal not used
gets a typed :class:`~dex_planning.interface.Rejection`. Backends implement
:meth:`ArmPlanner.plan_to_pose` (plus the start-state checks); see :mod:`dex_planning.cpu` and
:mod:`dex_planning.curobo_backend`. Use :func:`make_planner` to get the configured one.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from dex_description.compose import Robot
from dex_planning.config import PlannerConfig, default_config, validate
from dex_planning.errors import InvalidInputError, PlanningError
from dex_planning.ik import flange_target
from dex_planning.interface import (
    REASON_INVALID,
    REASON_NOT_TRIED,
    REASON_PRESHAPE_COLLISION,
    STATUS_INVALID,
    STATUS_NO_FEASIBLE,
    STATUS_OK,
    STATUS_TIMEOUT,
    PlanAttempt,
    ProposalTarget,
    Rejection,
    SelectionResult,
    Trajectory,
)
from dex_planning.scene import PlanningScene
from dex_planning.timing import TrapezoidSegment, sample_times

_LIMIT_TOL = 1e-3  # [rad] slack on the joint limits of proposals' hand joints
# [rad] slack on measured start states: a finger or joint pushed against its stop (by contact, or a
# soft limit in simulation) reads a little beyond it; the e2e benchmark met -1.0 mrad on Shadow's
# FFJ2 after a release. Such a start is clipped onto the stop; farther out is refused.
START_LIMIT_TOL = 0.02


def quat_to_matrix(quat_wxyz: Sequence[float]) -> np.ndarray:
    """(3, 3) rotation of a unit quaternion ``(w, x, y, z)``.

    Raises:
        InvalidInputError: Non-finite, or norm not within 1e-3 of 1.
    """
    q = np.asarray(quat_wxyz, dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise InvalidInputError(f"quaternion must be 4 finite numbers (w, x, y, z), got {quat_wxyz!r}")
    n = np.linalg.norm(q)
    if abs(n - 1.0) > 1e-3:
        raise InvalidInputError(f"quaternion must have unit norm, |q| = {n:.6f}")
    w, x, y, z = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def make_target(robot: Robot, proposal_id: str, position: Sequence[float], quat_wxyz: Sequence[float],
                joint_names: Sequence[str], joint_positions: Sequence[float]) -> ProposalTarget:
    """Validate one proposal's pre-grasp and convert it to a :class:`ProposalTarget`.

    Args:
        position: (3,) hand root position [m], world frame.
        quat_wxyz: (4,) hand root orientation.
        joint_names: Hand joint names of ``joint_positions`` (any order; must be exactly the hand's joints).
        joint_positions: Pre-grasp hand joints [rad].

    Raises:
        InvalidInputError: NaN/inf, wrong lengths, unknown or missing joint names, joints outside the
            hand's limits, or a non-unit quaternion.
    """
    hand = robot.cfg.hand
    p = np.asarray(position, dtype=np.float64)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise InvalidInputError(f"wrist position must be 3 finite numbers, got {position!r}")
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(quat_wxyz)
    T[:3, 3] = p
    names = [str(n) for n in joint_names]
    vals = np.asarray(joint_positions, dtype=np.float64).reshape(-1)
    if len(names) != len(vals):
        raise InvalidInputError(f"{len(names)} hand joint names but {len(vals)} positions")
    if not np.all(np.isfinite(vals)):
        raise InvalidInputError("hand joint positions contain NaN/inf")
    if sorted(names) != sorted(hand.joints):
        missing = [j for j in hand.joints if j not in names]
        unknown = [j for j in names if j not in hand.joints]
        raise InvalidInputError(f"hand joint names must be exactly the {hand.name} joints "
                                f"(missing: {missing or '-'}, unknown: {unknown or '-'})")
    index = {n: i for i, n in enumerate(names)}
    q = np.array([vals[index[j]] for j in hand.joints])
    model = robot.hand_model
    lo = np.array([model.jnt_range[model.joint(j).id][0] for j in hand.joints])
    hi = np.array([model.jnt_range[model.joint(j).id][1] for j in hand.joints])
    bad = [(j, v, a, b) for j, v, a, b in zip(hand.joints, q, lo, hi) if not a - _LIMIT_TOL <= v <= b + _LIMIT_TOL]
    if bad:
        j, v, a, b = bad[0]
        raise InvalidInputError(f"hand joint {j} = {v:.4f} outside its limits [{a:.4f}, {b:.4f}]")
    return ProposalTarget(str(proposal_id), T, np.clip(q, lo, hi))


def hand_pre_shaping(names: Sequence[str], q0: np.ndarray, q1: np.ndarray, vlim: np.ndarray,
                     speed_scale: float, min_duration: float, dt: float) -> Trajectory:
    """Minimum-jerk motion of the hand from ``q0`` to ``q1`` (n,) [rad] within ``speed_scale`` x ``vlim``.

    The duration is the larger of ``min_duration`` and the time the slowest joint needs (a
    minimum-jerk profile peaks at 1.875 x the mean velocity). Zero motion gives a one-point trajectory.
    """
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    delta = q1 - q0
    if np.abs(delta).max(initial=0.0) < 1e-9:
        z = np.zeros((1, len(q0)))
        return Trajectory(tuple(names), np.zeros(1), q0[None].copy(), z, z.copy())
    duration = max(min_duration, float(np.max(1.875 * np.abs(delta) / (speed_scale * vlim))))
    n = max(2, int(np.ceil(duration / dt)) + 1)
    t = np.linspace(0.0, duration, n)
    x = t / duration
    s = 10 * x**3 - 15 * x**4 + 6 * x**5
    sd = (30 * x**2 - 60 * x**3 + 30 * x**4) / duration
    sdd = (60 * x - 180 * x**2 + 120 * x**3) / duration**2
    return Trajectory(tuple(names), t, q0 + s[:, None] * delta, sd[:, None] * delta, sdd[:, None] * delta)


def hold_until(traj: Trajectory, t_end: float) -> Trajectory:
    """Append a final point holding the last state at ``t_end`` [s] (if later than the end)."""
    if t_end <= traj.duration + 1e-9:
        return traj
    z = np.zeros((1, traj.q.shape[1]))
    return Trajectory(traj.joint_names, np.concatenate([traj.t, [t_end]]), np.concatenate([traj.q, traj.q[-1:]]),
                      np.concatenate([traj.qd, z]), np.concatenate([traj.qdd, z]))


class ArmPlanner(ABC):
    """Interface of every backend, and the selection loop they share.

    Args:
        robot: The robot combo.
        cfg: Planner configuration (validated here).
    """

    backend = "abstract"

    def __init__(self, robot: Robot, cfg: PlannerConfig | None = None):
        self.robot = robot
        self.cfg = validate(cfg or default_config())
        self.arm_joints = tuple(robot.cfg.arm.joints)
        self.hand_joints = tuple(robot.cfg.hand.joints)
        m = robot.model
        self.arm_lower = np.array([m.jnt_range[m.joint(j).id][0] for j in self.arm_joints])
        self.arm_upper = np.array([m.jnt_range[m.joint(j).id][1] for j in self.arm_joints])
        self.hand_lower = np.array([m.jnt_range[m.joint(j).id][0] for j in self.hand_joints])
        self.hand_upper = np.array([m.jnt_range[m.joint(j).id][1] for j in self.hand_joints])
        self.vlim = robot.cfg.arm.velocity_limits * self.cfg.timing.velocity_scale
        self.alim = robot.cfg.arm.acceleration_limits * self.cfg.timing.acceleration_scale
        self.flange_T_root = robot.cfg.flange_T_root.matrix()

    # ------------------------------------------------------------ backend hooks

    @abstractmethod
    def set_scene(self, scene: PlanningScene) -> None:
        """Replace the obstacles."""

    @abstractmethod
    def start_collisions(self, start_q: np.ndarray, start_hand_q: np.ndarray) -> list[tuple[str, str]]:
        """Colliding pairs at the start state (empty: free)."""

    @abstractmethod
    def preshape_collisions(self, start_q: np.ndarray, hand_from: np.ndarray, hand_to: np.ndarray) -> list[tuple[str, str]]:
        """Colliding pairs while the hand moves ``hand_from -> hand_to`` at the arm's start state."""

    @abstractmethod
    def flange_pose(self, q: np.ndarray) -> np.ndarray:
        """``world_T_flange`` (4, 4) at arm joints ``q`` (6,)."""

    @abstractmethod
    def plan_to_pose(self, start_q: np.ndarray, world_T_flange: np.ndarray, hand_q: np.ndarray,
                     deadline: float) -> PlanAttempt:
        """Plan from ``start_q`` to any IK solution of ``world_T_flange`` with the hand at ``hand_q``,
        before ``deadline`` (``time.monotonic()`` value)."""

    # ------------------------------------------------------------ shared

    def wrist_path(self, traj: Trajectory, n: int = 50) -> np.ndarray:
        """(n, 3) hand root positions [m] (world) at ``n`` evenly spaced samples of an arm trajectory."""
        idx = np.unique(np.linspace(0, len(traj.t) - 1, max(2, n)).round().astype(int))
        return np.array([(self.flange_pose(traj.q[k]) @ self.flange_T_root)[:3, 3] for k in idx])

    def check_start(self, start_q: np.ndarray, start_hand_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validated ``(arm q (6,), hand q (n_hand,))``, clipped into the limits within
        ``START_LIMIT_TOL`` (0.02 rad).

        Raises:
            InvalidInputError: Wrong shape, NaN/inf, or outside the joint limits.
        """
        q = np.asarray(start_q, dtype=np.float64).reshape(-1)
        h = np.asarray(start_hand_q, dtype=np.float64).reshape(-1)
        if q.shape != (len(self.arm_joints),) or not np.all(np.isfinite(q)):
            raise InvalidInputError(f"start arm state must be {len(self.arm_joints)} finite values, got {np.asarray(start_q).tolist()}")
        if h.shape != (len(self.hand_joints),) or not np.all(np.isfinite(h)):
            raise InvalidInputError(f"start hand state must be {len(self.hand_joints)} finite values")
        for names, v, lo, hi in ((self.arm_joints, q, self.arm_lower, self.arm_upper),
                                 (self.hand_joints, h, self.hand_lower, self.hand_upper)):
            bad = np.flatnonzero((v < lo - START_LIMIT_TOL) | (v > hi + START_LIMIT_TOL))
            if len(bad):
                i = int(bad[0])
                raise InvalidInputError(f"start state: {names[i]} = {v[i]:.4f} outside its limits [{lo[i]:.4f}, {hi[i]:.4f}]")
        return np.clip(q, self.arm_lower, self.arm_upper), np.clip(h, self.hand_lower, self.hand_upper)

    def select(self, start_q: np.ndarray, start_hand_q: np.ndarray, proposals: Sequence[ProposalTarget | Exception],
               scene: PlanningScene, time_budget: float | None = None) -> SelectionResult:
        """The selection loop: plan to the first feasible proposal in rank order.

        Args:
            start_q: (6,) current arm joints [rad].
            start_hand_q: (n_hand,) current hand joints [rad].
            proposals: Ranked targets; an ``Exception`` in the list stands for a proposal that could
                not be converted (it is rejected as ``invalid`` with the exception's message).
            scene: Obstacles.
            time_budget: Wall-clock budget [s]; ``None`` or <= 0: ``cfg.time_budget``.

        Never raises for bad input: a malformed start state or scene gives ``status =
        invalid_request``; malformed proposals are rejected one by one.
        """
        t0 = time.monotonic()
        budget = float(time_budget) if time_budget is not None and np.isfinite(time_budget) and time_budget > 0 \
            else self.cfg.time_budget
        end = t0 + budget

        def done(result: SelectionResult) -> SelectionResult:
            result.planning_time = time.monotonic() - t0
            return result

        try:
            start_q, start_hand_q = self.check_start(start_q, start_hand_q)
            self.set_scene(scene)
            pairs = self.start_collisions(start_q, start_hand_q)
        except InvalidInputError as exc:
            return done(SelectionResult(False, STATUS_INVALID, str(exc)))
        if not proposals:
            return done(SelectionResult(False, STATUS_INVALID, "no proposals"))
        escape = None
        plan_q = start_q
        if pairs:
            escape = self.escape_start(start_q, start_hand_q, pairs)
            if escape is None:
                return done(SelectionResult(False, STATUS_INVALID, "start state in collision: " + _pairs_text(pairs)))
            plan_q = escape.q[-1].copy()
        rejections: list[Rejection] = []
        for i, prop in enumerate(proposals):
            now = time.monotonic()
            if now >= end:
                rejections.extend(Rejection(k, REASON_NOT_TRIED, f"time budget of {budget:.3f} s used up")
                                  for k in range(i, len(proposals)))
                return done(SelectionResult(False, STATUS_TIMEOUT, f"time budget of {budget:.3f} s used up after "
                                            f"{i} of {len(proposals)} proposals", rejections=rejections))
            if isinstance(prop, Exception):
                rejections.append(Rejection(i, REASON_INVALID, str(prop)))
                continue
            try:
                attempt = self._try(plan_q, start_hand_q, prop, min(end, now + self.cfg.proposal_timeout))
            except InvalidInputError as exc:
                rejections.append(Rejection(i, REASON_INVALID, str(exc)))
                continue
            if not attempt.success:
                rejections.append(Rejection(i, attempt.reason, attempt.message))
                continue
            hand = hand_pre_shaping(self.hand_joints, start_hand_q, prop.hand_q,
                                    self.robot.cfg.hand.velocity_limits, self.cfg.timing.hand_speed_scale,
                                    self.cfg.timing.hand_min_duration, self.cfg.timing.sample_dt)
            arm = attempt.arm.shifted(hand.duration)
            msg = f"planned to proposal {i} ('{prop.id}') after {len(rejections)} rejection(s)"
            if escape is not None:  # the arm leaves the start-state contact first, the hand waits
                hand = hand.shifted(escape.duration)
                arm = concatenate(escape, arm)
                msg += (f"; first moved {np.abs(plan_q - start_q).max():.3f} rad out of a start-state "
                        f"self-collision ({_pairs_text(pairs)})")
            hand = hold_until(hand, arm.duration)
            return done(SelectionResult(True, STATUS_OK, msg, i, arm, hand, attempt, rejections))
        return done(SelectionResult(False, STATUS_NO_FEASIBLE, f"none of {len(proposals)} proposals is feasible",
                                    rejections=rejections))

    def escape_start(self, start_q: np.ndarray, start_hand_q: np.ndarray,
                     pairs: Sequence[tuple[str, str]]) -> Trajectory | None:
        """The short straight arm move out of a start state in self-collision (see
        ``SearchConfig.start_escape``): for each distance [rad] in order, ``start_escape_samples``
        seeded random directions (max-norm = the distance, clipped to the joint limits); the first
        collision-free state whose straight path from the start (checked every 0.01 rad) meets no
        pair that did not collide at the start. Rest to rest at the planner's velocity and
        acceleration limits. None where a pair involves the environment (``env/...``: the robot
        must not move through it) or nothing is found."""
        s = self.cfg.search
        if not s.start_escape or any(touches_environment(p) for p in pairs):
            return None
        allowed = set(pairs) | {(b, a) for a, b in pairs}
        rng = np.random.default_rng(int(s.seed))
        for r in s.start_escape:
            d = rng.uniform(-1.0, 1.0, (int(s.start_escape_samples), len(start_q)))
            d /= np.abs(d).max(axis=1, keepdims=True)
            for q in np.clip(start_q + r * d, self.arm_lower, self.arm_upper):
                if self.start_collisions(q, start_hand_q):
                    continue
                steps = max(2, int(np.ceil(np.abs(q - start_q).max() / 0.01)))
                path_ok = all(set(self.start_collisions(start_q + f * (q - start_q), start_hand_q)) <= allowed
                              for f in np.linspace(0.0, 1.0, steps + 1)[1:-1])
                if not path_ok:
                    continue
                seg = TrapezoidSegment.plan(start_q, q, self.vlim, self.alim, self.cfg.timing.limit_margin)
                t = sample_times(seg.duration, self.cfg.timing.check_dt)
                qs, qd, qdd = seg.evaluate(t)
                qs[0], qs[-1] = start_q, q
                return Trajectory(self.arm_joints, t, qs, qd, qdd)
        return None

    def _try(self, start_q, start_hand_q, prop: ProposalTarget, deadline: float) -> PlanAttempt:
        T = np.asarray(prop.world_T_root, dtype=np.float64)
        h = np.asarray(prop.hand_q, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InvalidInputError("wrist pose must be a finite (4, 4) transform")
        R = T[:3, :3]
        if np.abs(R.T @ R - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
            raise InvalidInputError("wrist pose rotation is not a rotation matrix")
        if h.shape != (len(self.hand_joints),) or not np.all(np.isfinite(h)):
            raise InvalidInputError(f"pre-grasp hand joints must be {len(self.hand_joints)} finite values")
        pairs = self.preshape_collisions(start_q, start_hand_q, h)
        if pairs:
            return PlanAttempt(False, REASON_PRESHAPE_COLLISION,
                               "pre-shaping the hand at the start state collides: " + _pairs_text(pairs))
        return self.plan_to_pose(start_q, flange_target(T, self.flange_T_root), h, deadline)


def touches_environment(pair: tuple[str, str]) -> bool:
    """A colliding pair (geom names) with an obstacle of the planning scene (``env/...``), rather
    than of the robot with itself."""
    return pair[0].startswith("env/") or pair[1].startswith("env/")


def concatenate(first: Trajectory, then: Trajectory) -> Trajectory:
    """``first`` followed by ``then`` (whose first state must be ``first``'s last, both at rest there)."""
    if not np.allclose(first.q[-1], then.q[0], atol=1e-9):
        raise PlanningError("trajectories to concatenate do not meet")
    return Trajectory(first.joint_names, np.concatenate([first.t, then.t[1:] + first.duration]),
                      np.concatenate([first.q, then.q[1:]]), np.concatenate([first.qd, then.qd[1:]]),
                      np.concatenate([first.qdd, then.qdd[1:]]))


def _pairs_text(pairs: Sequence[tuple[str, str]], n: int = 3) -> str:
    text = ", ".join(f"{a} <-> {b}" for a, b in pairs[:n])
    return text + (f" (+{len(pairs) - n} more)" if len(pairs) > n else "")


def make_planner(robot: Robot, cfg: PlannerConfig | None = None) -> ArmPlanner:
    """The planner of the configured backend (``cfg.backend``: ``cpu`` or ``curobo``).

    Raises:
        BackendUnavailableError: ``curobo`` selected but not importable (message says what to do).
        PlanningConfigError: Invalid configuration.
    """
    cfg = validate(cfg or default_config())
    if cfg.backend == "cpu":
        from dex_planning.cpu import CpuPlanner

        return CpuPlanner(robot, cfg)
    if cfg.backend == "curobo":
        from dex_planning.curobo_backend import CuroboPlanner

        return CuroboPlanner(robot, cfg)
    raise PlanningError(f"unknown backend {cfg.backend!r}")  # unreachable after validate
