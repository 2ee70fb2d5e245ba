"""The ROS-free planner interface: inputs, results and the typed rejection reasons.

A planner (any backend) takes the current arm/hand state, ranked proposals (the hand ROOT pose at
the pre-grasp plus the hand's pre-grasp joints) and a :class:`~dex_planning.scene.PlanningScene`,
and returns a :class:`SelectionResult`: the first proposal (in rank order) it could plan to, the
time-parameterised arm trajectory, the hand's pre-shaping trajectory, and why every earlier
proposal was rejected.

Timing convention of the output: the hand moves from its current shape to the pre-grasp shape
first, while the arm holds its start state; then the arm moves, the hand holding the pre-shape.
So every arm state of the motion is checked with the hand at the pre-shape, and the pre-shaping
itself is checked at the start state. Both trajectories share the time origin and end together.

Shapes: arm joint vectors (6,) in ``cfg.arm.joints`` order; hand joint vectors (n_hand,) in
``cfg.hand.joints`` order; poses (4, 4) in the planning world (= ``base_link``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Reasons one proposal was not used (the strings of dex_interfaces/msg/ProposalRejection).
REASON_NO_IK = "no_ik"
REASON_COLLISION_AT_GOAL = "collision_at_goal"
REASON_PLANNER_TIMEOUT = "planner_timeout"
REASON_INVALID = "invalid"
REASON_NOT_TRIED = "not_tried"
# The hand's pre-shaping at the START state collides.
REASON_PRESHAPE_COLLISION = "preshape_collision"
REASONS = (REASON_NO_IK, REASON_COLLISION_AT_GOAL, REASON_PLANNER_TIMEOUT, REASON_INVALID,
           REASON_NOT_TRIED, REASON_PRESHAPE_COLLISION)

# Status of a whole request (PlanToProposals.srv ``status``).
STATUS_OK = "ok"
STATUS_NO_FEASIBLE = "no_feasible_proposal"
STATUS_INVALID = "invalid_request"
STATUS_TIMEOUT = "timeout"
STATUS_BACKEND_UNAVAILABLE = "backend_unavailable"
STATUS_INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class ProposalTarget:
    """One ranked proposal, as the planner needs it.

    Attributes:
        id: Proposal id (for messages).
        world_T_root: (4, 4) hand root ("wrist") pose at the pre-grasp, world frame.
        hand_q: (n_hand,) pre-grasp hand joints [rad], ``cfg.hand.joints`` order.
    """

    id: str
    world_T_root: np.ndarray
    hand_q: np.ndarray


@dataclass
class Trajectory:
    """A time-parameterised joint trajectory, densely sampled.

    Attributes:
        joint_names: Model joint names of the columns.
        t: (K,) times from the start [s], increasing, ``t[0] = 0``.
        q: (K, n) positions [rad].
        qd: (K, n) velocities [rad/s].
        qdd: (K, n) accelerations [rad/s^2].
    """

    joint_names: tuple[str, ...]
    t: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray

    @property
    def duration(self) -> float:
        return float(self.t[-1]) if len(self.t) else 0.0

    def resample(self, dt: float) -> "Trajectory":
        """Points every ``dt`` [s] (always including the last), linearly interpolated from the dense samples."""
        n = max(1, int(np.ceil(self.duration / dt - 1e-9)))
        ts = np.minimum(np.arange(n + 1) * dt, self.duration)
        ts[-1] = self.duration

        def interp(a: np.ndarray) -> np.ndarray:
            return np.stack([np.interp(ts, self.t, a[:, j]) for j in range(a.shape[1])], 1)

        return Trajectory(self.joint_names, ts, interp(self.q), interp(self.qd), interp(self.qdd))

    def shifted(self, dt: float) -> "Trajectory":
        """The same trajectory starting ``dt`` [s] later, holding its first state until then."""
        if dt <= 0:
            return self
        z = np.zeros((1, self.q.shape[1]))
        return Trajectory(self.joint_names, np.concatenate([[0.0], self.t + dt]),
                          np.concatenate([self.q[:1], self.q]), np.concatenate([z, self.qd]),
                          np.concatenate([z, self.qdd]))


@dataclass
class PlanStats:
    """Where the time went and what the path looks like.

    Attributes:
        ik_s, search_s, timing_s, check_s: Seconds spent in IK (+ goal checks), path search
            (+ simplification), time parameterisation, and the final dense re-check.
        n_ik_solutions: IK solutions within limits; ``n_goals``: of those, collision-free.
        direct: The straight joint-space line was valid (no sampling needed).
        via: A path through lifted states was valid (no sampling needed).
        path_length: Joint-space length of the arm path, sum over segments of the L2 norm [rad].
        n_waypoints: Waypoints after simplification.
        smooth: The smooth spline was used (else rest-to-rest segments).
        max_vel_ratio, max_acc_ratio: max over time and joints of ``|qd|/limit`` and ``|qdd|/limit``
            (densely checked, YAML limits).
        dense_check_ok: The dense re-check found no collision at ``check_margin``.
    """

    ik_s: float = 0.0
    search_s: float = 0.0
    timing_s: float = 0.0
    check_s: float = 0.0
    n_ik_solutions: int = 0
    n_goals: int = 0
    direct: bool = False
    via: bool = False
    path_length: float = float("nan")
    n_waypoints: int = 0
    smooth: bool = False
    max_vel_ratio: float = float("nan")
    max_acc_ratio: float = float("nan")
    dense_check_ok: bool = False


@dataclass
class PlanAttempt:
    """The outcome of planning to one proposal.

    Attributes:
        success: A checked trajectory was found.
        reason: One of :data:`REASONS` on failure, ``""`` on success.
        message: Human-readable detail.
        arm: The arm trajectory from the start to the pre-grasp (without the pre-shaping hold).
        goal_q: (6,) final arm joints.
        waypoints: (W, 6) the collision-checked joint-space path the trajectory follows.
        stats: Timings and path facts.
    """

    success: bool
    reason: str = ""
    message: str = ""
    arm: Trajectory | None = None
    goal_q: np.ndarray | None = None
    waypoints: np.ndarray | None = None
    stats: PlanStats = field(default_factory=PlanStats)


@dataclass(frozen=True)
class Rejection:
    """Why proposal ``index`` (into the request's list) was not used."""

    index: int
    reason: str
    message: str


@dataclass
class SelectionResult:
    """Result of the selection loop over ranked proposals.

    Attributes:
        success: A proposal was planned to.
        status: ``ok``, ``no_feasible_proposal``, ``invalid_request`` or ``timeout``.
        message: Human-readable summary.
        index: Index of the chosen proposal (-1 if none).
        arm: Arm trajectory (starts with the pre-shaping hold), or ``None``.
        hand: Hand trajectory (model joint names), or ``None``.
        attempt: The successful :class:`PlanAttempt` (stats, waypoints), or ``None``.
        rejections: One entry per proposal not used (tried and failed, invalid, or not tried).
        planning_time: Wall-clock time of the whole call [s].
    """

    success: bool
    status: str
    message: str
    index: int = -1
    arm: Trajectory | None = None
    hand: Trajectory | None = None
    attempt: PlanAttempt | None = None
    rejections: list[Rejection] = field(default_factory=list)
    planning_time: float = 0.0
