"""Grasp execution after the reach: approach -> squeeze -> lift, as joint-space motion segments.

The seam for execution policies. :class:`GraspExecutor` is the interface the orchestrator (ROS) and
the in-process simulation runner call, one stage at a time, each time from the *measured* state;
each stage yields :class:`MotionSegment` s that the caller sends to the drivers and waits for.

* :class:`OpenLoopExecutor` (this module, the baseline, BODex's real-robot procedure): one segment
  per stage, computed from the proposal alone. Approach: the wrist moves on a straight line with
  slerped orientation from the pre-grasp to the grasp pose while the hand joints interpolate
  pre-grasp -> grasp; squeeze: the hand closes to the squeeze joints, the arm holds; lift: the
  wrist moves straight up by the lift height, orientation and hand held; where the arm cannot
  follow a straight lift (it would stretch out to the elbow singularity, or leave the workspace),
  the lift leans toward the arm's base (``lift_lean``, up to 45 deg) and, last, is shortened to no
  less than ``lift_min_fraction`` of the height; where every such lift would make the robot touch
  itself (the planner's collision model), it stops short of the contact (``lift_self_check``). The arm follows the wrist
  path by IK (seeded along the path), sampled on a minimum-jerk time scaling whose duration is
  stretched until every joint is within ``speed_scale`` x its velocity limit.
* A learned closed-loop policy implements the same three methods and yields many short segments,
  each computed from the state the ``state`` callback returns when it is asked for the next one.

Every segment passes :func:`check_segment` before it is yielded (finite, inside joint limits,
within velocity limits, wrist inside the workspace box) and a violation raises
:class:`UnsafeMotion`: nothing outside the limits is ever handed to a driver.

Conventions: poses are (4, 4) homogeneous transforms ``world_T_root`` of the hand root body
("wrist") in the planning world (= the arm's ``base_link``); joint vectors are in the robot YAML's
model order (``arm.joints``, ``hand.joints``) [rad]; times [s].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from dex_description.compose import Robot


class ExecutionError(Exception):
    """Base of the executor's typed failures."""


class UnsafeMotion(ExecutionError):
    """A segment would leave the joint limits, the velocity limits or the workspace; not sent."""


class NoIKPath(ExecutionError):
    """The arm cannot follow the wrist path (no IK solution, or a jump between neighbours)."""


@dataclass(frozen=True)
class ExecutorConfig:
    """Open-loop execution settings (``default_config()`` + ``dataclasses.replace``).

    Attributes:
        speed_scale: Fraction of the arm's and hand's velocity limits a segment may use.
        approach_speed: [m/s] mean wrist speed pre-grasp -> grasp.
        approach_min_duration: [s].
        squeeze_duration: [s] hand grasp -> squeeze.
        lift_speed: [m/s] mean wrist speed of the lift.
        lift_min_duration: [s].
        dt: [s] sample spacing of the segments.
        max_joint_step: [rad] largest arm joint change between neighbouring samples (larger: the IK
            jumped branches; the path is refused).
        workspace_min, workspace_max: (3,) [m] box (world frame) the wrist must stay inside.
        ik_iters: Newton iterations per sample when following a path.
        lift_lean: [m] horizontal offsets toward the arm's base tried in turn (per metre of lift)
            when a straight lift cannot be followed.
        lift_min_fraction: Shortest lift tried, as a fraction of the requested height.
        lift_self_check: Check every lift sample for contacts of the robot with itself (the
            planner's collision model, pairs not touching at the lift's start); where every lift
            variant meets one, the lift stops short of the first contact, if it still rises
            ``lift_free_fraction`` of the height (measured: a Shadow lift drove the UR10e's wrist_1
            into the hand's forearm, the arm stopped 0.24 rad short and the stage failed with the
            object held).
        lift_free_fraction: See ``lift_self_check``.
        release_duration: [s] opening the hand after a failed lift (before another attempt).
    """

    speed_scale: float = 0.5
    approach_speed: float = 0.05
    approach_min_duration: float = 1.0
    squeeze_duration: float = 1.0
    lift_speed: float = 0.10
    lift_min_duration: float = 1.5
    dt: float = 0.02
    max_joint_step: float = 0.15
    workspace_min: tuple[float, float, float] = (-1.4, -1.4, -0.02)
    workspace_max: tuple[float, float, float] = (1.4, 1.4, 1.6)
    ik_iters: int = 20
    lift_lean: tuple[float, ...] = (0.0, 0.4, 0.8, 1.0)
    lift_min_fraction: float = 0.7
    lift_self_check: bool = True
    lift_free_fraction: float = 0.5
    release_duration: float = 0.8


def default_config() -> ExecutorConfig:
    return ExecutorConfig()


@dataclass
class MotionSegment:
    """Synchronised arm + hand motion (one stage, or one chunk of it).

    Attributes:
        stage: ``approach`` | ``squeeze`` | ``lift`` (or a policy's chunk of one).
        t: (K,) times from the segment start [s], ``t[0] = 0``.
        arm_q: (K, 6) arm joints [rad], ``arm.joints`` order.
        hand_q: (K, n_hand) hand joints [rad], ``hand.joints`` order.
        world_T_root: (K, 4, 4) the wrist poses the arm samples realise (for checks and display).
    """

    stage: str
    t: np.ndarray
    arm_q: np.ndarray
    hand_q: np.ndarray
    world_T_root: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))

    @property
    def duration(self) -> float:
        return float(self.t[-1]) if len(self.t) else 0.0

    def arm_qd(self) -> np.ndarray:
        """(K, 6) central-difference velocities [rad/s] (zero at both ends: segments start and stop at rest)."""
        return _velocity(self.t, self.arm_q)

    def hand_qd(self) -> np.ndarray:
        return _velocity(self.t, self.hand_q)


@dataclass(frozen=True)
class GraspTarget:
    """What the executor needs of the chosen proposal (world frame, model joint order).

    Attributes:
        pregrasp_T, grasp_T, squeeze_T: (4, 4) wrist poses.
        pregrasp_q, grasp_q, squeeze_q: (n_hand,) hand joints [rad].
    """

    pregrasp_T: np.ndarray
    grasp_T: np.ndarray
    squeeze_T: np.ndarray
    pregrasp_q: np.ndarray
    grasp_q: np.ndarray
    squeeze_q: np.ndarray


@dataclass
class ExecutionContext:
    """What a stage may look at.

    Attributes:
        target: The grasp being executed.
        state: Returns the measured ``(arm_q (6,), hand_q (n_hand,))`` [rad] now.
        lift_height: [m].
    """

    target: GraspTarget
    state: Callable[[], tuple[np.ndarray, np.ndarray]]
    lift_height: float = 0.25


class GraspExecutor(ABC):
    """Interface of every execution policy (the open-loop baseline, a distilled policy, ...)."""

    name = "abstract"

    @abstractmethod
    def approach(self, ctx: ExecutionContext) -> Iterator[MotionSegment]: ...

    @abstractmethod
    def squeeze(self, ctx: ExecutionContext) -> Iterator[MotionSegment]: ...

    @abstractmethod
    def lift(self, ctx: ExecutionContext) -> Iterator[MotionSegment]: ...

    @abstractmethod
    def release(self, ctx: ExecutionContext) -> Iterator[MotionSegment]:
        """After a failed lift (the arm is up, clear of the table): let go, so that the episode can
        try again from perception."""


# ---------------------------------------------------------------------------------------------- maths


def _velocity(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    v = np.zeros_like(q)
    if len(t) >= 3:
        v[1:-1] = (q[2:] - q[:-2]) / (t[2:] - t[:-2])[:, None]
    return v


def min_jerk(n: int) -> np.ndarray:
    """(n,) minimum-jerk path parameter s in [0, 1] at evenly spaced times."""
    x = np.linspace(0.0, 1.0, max(2, n))
    return 10 * x**3 - 15 * x**4 + 6 * x**5


def _quat_from_matrix(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_quat()


def interpolate_poses(a_T: np.ndarray, b_T: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(K, 4, 4) poses from ``a_T`` to ``b_T`` (4, 4): position linear, orientation slerp, at ``s`` (K,) in [0, 1]."""
    from scipy.spatial.transform import Rotation, Slerp

    rots = Rotation.from_matrix(np.stack([a_T[:3, :3], b_T[:3, :3]]))
    out = np.tile(np.eye(4), (len(s), 1, 1))
    out[:, :3, :3] = Slerp([0.0, 1.0], rots)(np.clip(s, 0.0, 1.0)).as_matrix()
    out[:, :3, 3] = a_T[:3, 3] + s[:, None] * (b_T[:3, 3] - a_T[:3, 3])
    return out


class ArmFollower:
    """IK along a wrist path on the planner's exact arm model.

    Args:
        planner: A :class:`dex_planning.planner.ArmPlanner` with an ``ik`` (:class:`dex_planning.ik.ArmIK`);
            for the cuRobo backend its CPU companion is used.
    """

    def __init__(self, planner):
        base = getattr(planner, "cpu", planner)
        self.planner = base  # also the executor's collision checks (start_collisions)
        self.ik = base.ik
        self.flange_T_root = np.asarray(base.flange_T_root, dtype=np.float64)
        self.root_T_flange = np.linalg.inv(self.flange_T_root)
        self.lower = np.asarray(base.arm_lower, dtype=np.float64)
        self.upper = np.asarray(base.arm_upper, dtype=np.float64)
        self.flange_pose = base.flange_pose
        self.world_T_base = np.linalg.inv(np.asarray(self.ik.base_T_world, dtype=np.float64))

    def wrist_pose(self, arm_q: np.ndarray) -> np.ndarray:
        """(4, 4) ``world_T_root`` at arm joints ``arm_q`` (6,)."""
        return self.flange_pose(np.asarray(arm_q, dtype=np.float64)) @ self.flange_T_root

    def follow(self, poses: np.ndarray, q0: np.ndarray, iters: int, max_step: float) -> np.ndarray:
        """(K, 6) joints realising ``poses`` (K, 4, 4), starting near ``q0`` (6,).

        Raises:
            NoIKPath: a sample has no solution near its predecessor, or the solution jumps by more
                than ``max_step`` [rad] in some joint.
        """
        q = np.asarray(q0, dtype=np.float64).copy()
        out = np.empty((len(poses), 6))
        for k, T in enumerate(poses):
            target = T @ self.root_T_flange
            sol = self.ik.polish(target, q, iters)
            if sol is None:
                sols = self.ik.solve(target, self.lower, self.upper, q)
                if not sols:
                    raise NoIKPath(f"no IK solution for wrist sample {k + 1}/{len(poses)} at "
                                   f"{np.round(T[:3, 3], 3).tolist()} m")
                sol = sols[0]
            if np.abs(sol - q).max() > max_step and k > 0:
                j = int(np.argmax(np.abs(sol - q)))
                raise NoIKPath(f"arm joint {j} would jump {np.abs(sol - q)[j]:.2f} rad between wrist samples "
                               f"{k} and {k + 1} (a different IK branch)")
            out[k] = q = sol
        return out


def check_segment(seg: MotionSegment, arm_limits: tuple[np.ndarray, np.ndarray],
                  hand_limits: tuple[np.ndarray, np.ndarray], arm_vlim: np.ndarray, hand_vlim: np.ndarray,
                  workspace: tuple[np.ndarray, np.ndarray], tol: float = 1e-3) -> None:
    """Raise :class:`UnsafeMotion` unless every sample is finite, inside the joint limits (``tol`` [rad]),
    within the velocity limits (+5 %) and, where wrist poses are given, inside the workspace box."""
    for what, q, (lo, hi) in (("arm", seg.arm_q, arm_limits), ("hand", seg.hand_q, hand_limits)):
        if not np.all(np.isfinite(q)):
            raise UnsafeMotion(f"{seg.stage}: {what} joints contain NaN/inf")
        bad = np.argwhere((q < lo - tol) | (q > hi + tol))
        if len(bad):
            k, j = bad[0]
            raise UnsafeMotion(f"{seg.stage}: {what} joint {j} = {q[k, j]:.3f} rad outside [{lo[j]:.3f}, {hi[j]:.3f}]")
    if len(seg.t) < 1 or (len(seg.t) > 1 and np.any(np.diff(seg.t) <= 0)):
        raise UnsafeMotion(f"{seg.stage}: times must increase")
    for what, qd, vlim in (("arm", seg.arm_qd(), arm_vlim), ("hand", seg.hand_qd(), hand_vlim)):
        ratio = np.abs(qd) / np.asarray(vlim)[None, :]
        if ratio.size and ratio.max() > 1.05:
            k, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            raise UnsafeMotion(f"{seg.stage}: {what} joint {j} velocity {abs(qd[k, j]):.2f} rad/s over its limit {vlim[j]:.2f}")
    if len(seg.world_T_root):
        p = seg.world_T_root[:, :3, 3]
        lo, hi = workspace
        out = np.flatnonzero(np.any((p < lo) | (p > hi), axis=1))
        if len(out):
            raise UnsafeMotion(f"{seg.stage}: wrist at {np.round(p[out[0]], 3).tolist()} m leaves the workspace box "
                               f"{np.round(lo, 2).tolist()} .. {np.round(hi, 2).tolist()}")


# ---------------------------------------------------------------------------------------------- open loop


START_SLACK = 0.05  # [rad] a measured hand joint this far past its stop starts a segment from the stop


class OpenLoopExecutor(GraspExecutor):
    """The baseline: approach, squeeze and lift computed from the proposal (see the module doc).

    Args:
        robot: The robot combo.
        planner: For IK along wrist paths (:class:`ArmFollower`).
        cfg: Settings.
    """

    name = "open_loop"

    def __init__(self, robot: Robot, planner, cfg: ExecutorConfig | None = None):
        self.robot = robot
        self.cfg = cfg or default_config()
        self.arm = ArmFollower(planner)
        m = robot.model
        hand = robot.cfg.hand
        self.hand_lower = np.array([m.jnt_range[m.joint(j).id][0] for j in hand.joints])
        self.hand_upper = np.array([m.jnt_range[m.joint(j).id][1] for j in hand.joints])
        self.arm_vlim = np.asarray(robot.cfg.arm.velocity_limits, dtype=np.float64) * np.ones(6)
        self.hand_vlim = np.asarray(hand.velocity_limits, dtype=np.float64) * np.ones(len(hand.joints))
        self.workspace = (np.asarray(self.cfg.workspace_min, float), np.asarray(self.cfg.workspace_max, float))

    # -------------------------------------------------------------- building blocks
    def _into_limits(self, hand_q: np.ndarray, slack: float = 0.02) -> np.ndarray:
        """Hand joints (n,) [rad] at most ``slack`` [rad] outside the model's limits are clipped onto
        them (a proposal's limits come from its own kinematics and round differently; a finger
        pressed against its stop reads a little beyond it); farther ones are left for
        :func:`check_segment` to refuse. A segment's start (the measured hand) gets
        ``START_SLACK``: the e2e benchmark met Shadow's thumb pressed 0.020 rad past its stop by
        the object at the start of the squeeze."""
        q = np.asarray(hand_q, dtype=np.float64)
        near = (q >= self.hand_lower - slack) & (q <= self.hand_upper + slack)
        return np.where(near, np.clip(q, self.hand_lower, self.hand_upper), q)

    def _timed(self, stage: str, poses_of_s: Callable[[np.ndarray], np.ndarray] | None, arm_q0: np.ndarray,
               hand_a: np.ndarray, hand_b: np.ndarray, duration: float) -> MotionSegment:
        """Sample ``s`` on a minimum-jerk profile of ``duration``, stretching it until the joint
        velocities are within ``speed_scale`` x the limits."""
        c = self.cfg
        hand_a, hand_b = self._into_limits(hand_a, START_SLACK), self._into_limits(hand_b)
        for _ in range(6):
            n = max(2, int(np.ceil(duration / c.dt)) + 1)
            t = np.linspace(0.0, duration, n)
            s = min_jerk(n)
            if poses_of_s is None:
                poses = np.repeat(self.arm.wrist_pose(arm_q0)[None], n, axis=0)
                arm_q = np.repeat(np.asarray(arm_q0, float)[None], n, axis=0)
            else:
                poses = poses_of_s(s)
                arm_q = self.arm.follow(poses, arm_q0, c.ik_iters, c.max_joint_step)
            hand_q = hand_a[None] + s[:, None] * (hand_b - hand_a)[None]
            seg = MotionSegment(stage, t, arm_q, hand_q, poses)
            ratio = max(float((np.abs(seg.arm_qd()) / self.arm_vlim).max(initial=0.0)),
                        float((np.abs(seg.hand_qd()) / self.hand_vlim).max(initial=0.0)))
            if ratio <= c.speed_scale * 1.0001:
                break
            duration *= ratio / c.speed_scale * 1.02
        check_segment(seg, (self.arm.lower, self.arm.upper), (self.hand_lower, self.hand_upper),
                      self.arm_vlim, self.hand_vlim, self.workspace)
        return seg

    # -------------------------------------------------------------- stages
    def approach(self, ctx: ExecutionContext) -> Iterator[MotionSegment]:
        arm_q, hand_q = ctx.state()
        tgt = ctx.target
        start_T = self.arm.wrist_pose(arm_q)  # from where the arm really is (the reach's end)
        dist = float(np.linalg.norm(tgt.grasp_T[:3, 3] - start_T[:3, 3]))
        duration = max(self.cfg.approach_min_duration, dist / self.cfg.approach_speed)
        yield self._timed("approach", lambda s: interpolate_poses(start_T, tgt.grasp_T, s), arm_q,
                          np.asarray(hand_q, float), np.asarray(tgt.grasp_q, float), duration)

    def squeeze(self, ctx: ExecutionContext) -> Iterator[MotionSegment]:
        arm_q, hand_q = ctx.state()
        tgt = ctx.target
        start_T = self.arm.wrist_pose(arm_q)
        moves = float(np.linalg.norm(tgt.squeeze_T[:3, 3] - start_T[:3, 3])) > 1e-4
        poses = (lambda s: interpolate_poses(start_T, tgt.squeeze_T, s)) if moves else None
        yield self._timed("squeeze", poses, arm_q, np.asarray(hand_q, float), np.asarray(tgt.squeeze_q, float),
                          self.cfg.squeeze_duration)

    def lift(self, ctx: ExecutionContext) -> Iterator[MotionSegment]:
        arm_q, _ = ctx.state()
        tgt = ctx.target
        start_T = self.arm.wrist_pose(arm_q)
        end_T = start_T.copy()
        end_T[2, 3] += ctx.lift_height
        squeeze = np.asarray(tgt.squeeze_q, float)  # keep commanding the squeeze (the hand is blocked by the object)
        # toward the arm's base, horizontally (a lift that leans in stays inside the arm's reach)
        inward = self.arm.world_T_base[:3, 3] - start_T[:3, 3]
        inward[2] = 0.0
        inward /= max(float(np.linalg.norm(inward)), 1e-9)
        first: ExecutionError | None = None
        heights = [ctx.lift_height] + ([ctx.lift_height * self.cfg.lift_min_fraction]
                                       if self.cfg.lift_min_fraction < 1.0 else [])
        meets_itself: list[tuple[int, MotionSegment, str]] = []
        for height in heights:
            for lean in self.cfg.lift_lean:
                end_T = start_T.copy()
                end_T[:3, 3] += height * (np.array([0.0, 0.0, 1.0]) + lean * inward)
                dist = float(np.linalg.norm(end_T[:3, 3] - start_T[:3, 3]))
                duration = max(self.cfg.lift_min_duration, dist / self.cfg.lift_speed)
                try:
                    seg = self._timed("lift", lambda s, e=end_T: interpolate_poses(start_T, e, s), arm_q, squeeze,
                                      squeeze, duration)
                except ExecutionError as exc:
                    first = first or exc
                    continue
                hit = self._first_self_contact(seg) if self.cfg.lift_self_check else None
                if hit is None:
                    yield seg
                    return
                meets_itself.append((hit[0], seg, hit[1]))
        if meets_itself:  # every variant meets the robot itself: the longest free start of one
            k, seg, pairs = max(meets_itself, key=lambda c: c[0])
            end_T = seg.world_T_root[max(0, k - 3)]  # three samples before the contact
            rise = float(end_T[2, 3] - start_T[2, 3])
            if rise < self.cfg.lift_free_fraction * ctx.lift_height:
                raise UnsafeMotion(f"lift: the arm would meet itself ({pairs}) {rise:.3f} m up, below "
                                   f"{self.cfg.lift_free_fraction:.0%} of the {ctx.lift_height:.2f} m lift")
            duration = max(self.cfg.lift_min_duration, rise / self.cfg.lift_speed)
            yield self._timed("lift", lambda s, e=end_T: interpolate_poses(start_T, e, s), arm_q, squeeze, squeeze,
                              duration)
            return
        assert first is not None
        raise first

    def _first_self_contact(self, seg: MotionSegment) -> tuple[int, str] | None:
        """``(index, pairs)`` of the first sample of ``seg`` where the robot touches itself in the
        planner's collision model with a pair that does not touch at the first sample (pairs with
        the environment, ``env/...``, are not looked at), or None."""
        from dex_planning.planner import touches_environment

        planner = self.arm.planner

        def own(k: int) -> set:
            return {p for p in planner.start_collisions(seg.arm_q[k], seg.hand_q[k]) if not touches_environment(p)}

        before = own(0)
        for k in range(1, len(seg.t)):
            new = own(k) - before
            if new:
                return k, ", ".join(f"{a} <-> {b}" for a, b in sorted(new)[:2])
        return None


    def release(self, ctx: ExecutionContext) -> Iterator[MotionSegment]:
        """Open the hand to its ``open`` named pose (the pre-grasp shape if it has none) with the arm
        held where it is (``release_duration``). Fully open rather than back to the pre-grasp
        shape: a squeeze can leave fingers hooked over each other (Shadow's little finger under the
        ring finger), and the next reach pre-shapes from the same pose as the first did. Where the
        open hand would collide with the arm at this arm pose (the e2e benchmark met LEAP's open
        thumb on the UR5e's wrist_1_link after a lift, and the next plan refused that start
        state), it opens to the pre-grasp shape instead."""
        arm_q, hand_q = ctx.state()
        poses = self.robot.cfg.hand.named_poses
        target = np.asarray(ctx.target.pregrasp_q, float)
        if "open" in poses:
            open_q = np.asarray(poses["open"], float)
            if not self.arm.planner.start_collisions(np.asarray(arm_q, float), open_q):
                target = open_q
        yield self._timed("release", None, arm_q, np.asarray(hand_q, float), target, self.cfg.release_duration)


def make_executor(name: str, robot: Robot, planner, cfg: ExecutorConfig | None = None) -> GraspExecutor:
    """The executor called ``name`` (``open_loop``; learned policies register here when they exist).

    Raises:
        ExecutionError: unknown name.
    """
    if name == "open_loop":
        return OpenLoopExecutor(robot, planner, cfg)
    raise ExecutionError(f"unknown executor '{name}' (available: open_loop)")


def fingers_blocked(hand_q: np.ndarray, grasp_q: np.ndarray, squeeze_q: np.ndarray, ratio: float = 0.4,
                    min_gap: float = 0.02) -> tuple[bool, float]:
    """Whether something stops the fingers short of the squeeze target: the measured hand joints
    ``hand_q`` (n,) [rad] are farther than ``ratio`` x the squeeze increment (``squeeze_q - grasp_q``,
    infinity norm) and at least ``min_gap`` [rad] from ``squeeze_q``. Position-controlled fingers
    that hold an object stay short of a squeeze target set beyond contact; empty fingers reach it.
    Returns ``(blocked, gap [rad])``."""
    gap = float(np.abs(np.asarray(hand_q, float) - np.asarray(squeeze_q, float)).max())
    increment = float(np.abs(np.asarray(squeeze_q, float) - np.asarray(grasp_q, float)).max())
    return gap >= max(min_gap, ratio * increment), gap
