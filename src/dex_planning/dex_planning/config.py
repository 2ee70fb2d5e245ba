"""Planner configuration, MuJoCo-Playground style: ``default_config()`` then ``dataclasses.replace``.

Example::

    cfg = default_config()
    cfg = replace(cfg, collision=replace(cfg.collision, env_margin=0.02), backend="cpu")

Units: [m], [rad], [s]. Every field is checked by :func:`validate` (called by the planners), which
raises :class:`~dex_planning.errors.PlanningConfigError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from dex_planning.errors import PlanningConfigError

BACKENDS = ("cpu", "curobo")


@dataclass(frozen=True)
class IKConfig:
    """IK settings.

    Attributes:
        analytic: Use the closed-form UR solver when the arm is a known UR.
        pos_tol: Accepted flange position error [m].
        rot_tol: Accepted flange orientation error [rad].
        polish_iters: Newton steps allowed to polish a closed-form seed.
        numeric_seeds: Seeds for the DLS fallback (reference, home, then random in the bounds).
        numeric_iters: DLS iterations per seed.
        damping: DLS damping ``lambda`` [m or rad].
        seed: RNG seed of the random DLS seeds.
    """

    analytic: bool = True
    pos_tol: float = 1e-5
    rot_tol: float = 1e-4
    polish_iters: int = 20
    numeric_seeds: int = 12
    numeric_iters: int = 100
    damping: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class CollisionConfig:
    """Collision checking of the CPU backend.

    Attributes:
        hand_geometry: ``hulls`` (one convex hull per hand link, default) or ``geoms``.
        env_margin: Clearance kept from the table, boxes and cloud while moving [m].
        self_margin: Clearance kept between robot links while moving [m].
        near_self_margin: The same for links at most two joints apart (UR wrist 1 vs the hand, the
            shoulder vs the forearm): their geometry passes within millimetres by construction,
            so a clearance there forbids whole bands of joint angles [m].
        endpoint_margin: Clearance demanded at the start and goal and near them [m] (the pre-grasp
            is by design close to the object: BODex backs it off 1 cm).
        endpoint_radius: Size of the "near the start/goal" region, in the scaled joint metric [m]
            (see ``motion_step``).
        check_margin: Margin of the final dense re-check [m] (0: no penetration at all).
        motion_step: Planner motion-check resolution: the largest displacement of any robot point
            between two checked states [m] (a bound from joint lever arms, see ``cpu.lever_arms``).
        check_step: The same bound for the final dense re-check of the trajectory [m].
        cloud_resolution: Octree leaf size for obstacle clouds [m].
        hand_shape_samples: Hand shapes checked while the hand moves to its pre-shape at the start.
    """

    hand_geometry: str = "hulls"
    env_margin: float = 0.01
    self_margin: float = 0.005
    near_self_margin: float = 0.0
    endpoint_margin: float = 0.002
    endpoint_radius: float = 0.08
    check_margin: float = 0.0
    motion_step: float = 0.02
    check_step: float = 0.01
    cloud_resolution: float = 0.005
    hand_shape_samples: int = 5


@dataclass(frozen=True)
class SearchConfig:
    """OMPL search.

    Attributes:
        planner: ``RRTConnect`` or ``AORRTC``.
        range: Maximum tree extension in the scaled joint metric [m]; 0 = OMPL's default (a fifth
            of the space's extent, ~3-4 m here: long extensions that mostly fail).
        joint_window: Planning bounds ``home +- joint_window`` [rad], intersected with the model's
            limits and widened to include the start (wider windows double path lengths).
        simplify: Shortcut and smooth the raw path (OMPL ``PathSimplifier.simplify``).
        simplify_time: Time allowed for simplification [s].
        try_direct: Try the straight joint-space line to each goal before sampling.
        via_lifts: Then try paths through states with the hand moved by these distances [m] above
            the start (retreat), above the goal, or back from the goal along the palm normal
            (approach); empty: skip.
        seed: OMPL's RNG seed (>= 1), set once per process (reproducible single-threaded runs).
        start_escape: A start state whose only collisions are between the robot's own links (the
            robot stands there, e.g. a UR10e's forearm against the Shadow hand's forearm after a
            lift, but the planner's conservative model calls it a collision) is left by a short
            straight move to the nearest free state found at these joint distances [rad] (largest
            joint change), along which no pair collides that did not at the start (MoveIt's
            "fix start state collision"); empty: refuse such a start as before.
        start_escape_samples: Random directions tried per distance (seeded).
    """

    planner: str = "RRTConnect"
    range: float = 1.0
    joint_window: float = math.pi
    simplify: bool = True
    simplify_time: float = 0.03
    try_direct: bool = True
    via_lifts: tuple[float, ...] = (0.15, 0.3)
    seed: int = 1
    start_escape: tuple[float, ...] = (0.03, 0.06, 0.12, 0.2)
    start_escape_samples: int = 24


@dataclass(frozen=True)
class TimingConfig:
    """Time parameterisation (TOPP-RA) and trajectory output.

    Attributes:
        velocity_scale, acceleration_scale: Fractions of the robot YAML's limits to plan with.
        limit_margin: TOPP-RA plans with ``(1 - limit_margin)`` x the limits, so that they also hold
            between its grid points (verified densely afterwards; retried with twice the margin).
        gridpoints_min: Minimum TOPP-RA grid points.
        gridpoints_per_unit: Grid points per unit of path length in the scaled joint metric [1/m].
        sample_dt: Period of the output trajectory's points [s].
        check_dt: Time step of the dense limit check [s].
        hand_speed_scale: Fraction of the hand's velocity limits for the pre-shaping motion.
        hand_min_duration: Shortest pre-shaping motion [s].
        smooth: Fit one smooth spline through the simplified waypoints (falls back to rest-to-rest
            straight segments, which are exactly the checked path, if the spline collides).
    """

    velocity_scale: float = 1.0
    acceleration_scale: float = 1.0
    limit_margin: float = 0.05
    gridpoints_min: int = 400
    gridpoints_per_unit: float = 200.0
    sample_dt: float = 0.02
    check_dt: float = 0.002
    hand_speed_scale: float = 0.5
    hand_min_duration: float = 0.3
    smooth: bool = True


@dataclass(frozen=True)
class CuroboConfig:
    """cuRobo backend (GPU). Only used when ``backend == "curobo"``.

    Attributes:
        device: Torch device string, e.g. ``cuda:0``.
        collision_activation_distance: cuRobo's collision activation distance [m].
        interpolation_dt: Output time step of cuRobo's trajectories [s].
        num_ik_seeds, num_trajopt_seeds, num_graph_seeds: cuRobo's seed counts.
        max_attempts: ``MotionGenPlanConfig.max_attempts``.
        cloud_voxel_size: Voxel size when the obstacle cloud is passed as a voxel grid [m].
    """

    device: str = "cuda:0"
    collision_activation_distance: float = 0.01
    interpolation_dt: float = 0.02
    num_ik_seeds: int = 32
    num_trajopt_seeds: int = 4
    num_graph_seeds: int = 4
    max_attempts: int = 4
    cloud_voxel_size: float = 0.01


@dataclass(frozen=True)
class PlannerConfig:
    """Everything the planners read.

    Attributes:
        backend: ``cpu`` (default) or ``curobo``.
        time_budget: Default wall-clock budget of one selection loop [s].
        proposal_timeout: Most time spent planning to one proposal [s].
        max_goals: Most IK solutions kept as goals per proposal (closest to the start first).
    """

    backend: str = "cpu"
    time_budget: float = 2.0
    proposal_timeout: float = 0.5
    max_goals: int = 8
    collision: CollisionConfig = field(default_factory=CollisionConfig)
    ik: IKConfig = field(default_factory=IKConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    curobo: CuroboConfig = field(default_factory=CuroboConfig)


def default_config() -> PlannerConfig:
    """The planner configuration dexgrasp uses unless told otherwise."""
    return PlannerConfig()


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise PlanningConfigError(name, msg)


def validate(cfg: PlannerConfig) -> PlannerConfig:
    """Check every field; returns ``cfg``.

    Raises:
        PlanningConfigError: Naming the first bad field.
    """
    _check(cfg.backend in BACKENDS, "backend", f"must be one of {BACKENDS}, got {cfg.backend!r}")
    for name in ("time_budget", "proposal_timeout"):
        v = getattr(cfg, name)
        _check(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, name, f"must be > 0 [s], got {v!r}")
    _check(int(cfg.max_goals) >= 1, "max_goals", "must be >= 1")
    c = cfg.collision
    _check(c.hand_geometry in ("hulls", "geoms"), "collision.hand_geometry", "must be 'hulls' or 'geoms'")
    for name in ("env_margin", "self_margin", "near_self_margin", "endpoint_margin", "check_margin", "endpoint_radius"):
        v = getattr(c, name)
        _check(math.isfinite(v) and v >= 0, f"collision.{name}", f"must be >= 0, got {v!r}")
    for name in ("motion_step", "check_step", "cloud_resolution"):
        v = getattr(c, name)
        _check(math.isfinite(v) and v > 0, f"collision.{name}", f"must be > 0, got {v!r}")
    _check(c.endpoint_margin <= c.env_margin, "collision.endpoint_margin", "must be <= env_margin")
    _check(c.check_margin <= c.endpoint_margin, "collision.check_margin", "must be <= endpoint_margin")
    _check(c.hand_shape_samples >= 2, "collision.hand_shape_samples", "must be >= 2")
    s = cfg.search
    _check(s.planner in ("RRTConnect", "AORRTC"), "search.planner", f"must be RRTConnect or AORRTC, got {s.planner!r}")
    _check(0 < s.joint_window <= 2 * math.pi, "search.joint_window", "must be in (0, 2 pi]")
    _check(s.range >= 0 and s.simplify_time >= 0, "search.range", "range and simplify_time must be >= 0")
    _check(int(s.seed) >= 1, "search.seed", "must be >= 1 (OMPL rejects 0)")
    _check(all(math.isfinite(r) and 0 < r <= 1.0 for r in s.start_escape), "search.start_escape",
           f"distances must be in (0, 1] rad, got {s.start_escape!r}")
    _check(int(s.start_escape_samples) >= 1, "search.start_escape_samples", "must be >= 1")
    t = cfg.timing
    for name in ("velocity_scale", "acceleration_scale"):
        v = getattr(t, name)
        _check(0 < v <= 1, f"timing.{name}", f"must be in (0, 1], got {v!r}")
    _check(0 <= t.limit_margin < 0.5, "timing.limit_margin", "must be in [0, 0.5)")
    _check(t.gridpoints_min >= 10, "timing.gridpoints_min", "must be >= 10")
    for name in ("sample_dt", "check_dt", "hand_min_duration", "gridpoints_per_unit"):
        v = getattr(t, name)
        _check(math.isfinite(v) and v > 0, f"timing.{name}", f"must be > 0, got {v!r}")
    _check(0 < t.hand_speed_scale <= 1, "timing.hand_speed_scale", "must be in (0, 1]")
    return cfg


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys: ``{"collision": {"env_margin": 0.02}}`` -> ``{"collision.env_margin": 0.02}``."""
    out = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(path: str | Path, base: PlannerConfig | None = None) -> PlannerConfig:
    """A YAML of overrides (nested sections or dotted keys) applied to ``base`` (default config).

    Raises:
        PlanningConfigError: Unreadable YAML, unknown field, wrong type or an invalid value.
    """
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PlanningConfigError(str(path), f"cannot read planner config: {exc}") from exc
    if not isinstance(data, dict):
        raise PlanningConfigError(str(path), "a planner config YAML must be a mapping")
    return validate(override(base or default_config(), flatten(data)))


def override(cfg: Any, values: dict[str, Any]) -> Any:
    """Apply dotted overrides, e.g. ``{"collision.env_margin": 0.02, "backend": "curobo"}``.

    Raises:
        PlanningConfigError: Unknown field or a value of the wrong type.
    """
    for key, value in values.items():
        parts = key.split(".")
        cfg = _override_one(cfg, parts, value, key)
    return cfg


def _override_one(obj: Any, parts: list[str], value: Any, full: str) -> Any:
    names = {f.name for f in fields(obj)}
    if parts[0] not in names:
        raise PlanningConfigError(full, f"unknown field (known here: {', '.join(sorted(names))})")
    current = getattr(obj, parts[0])
    if len(parts) > 1:
        if not is_dataclass(current):
            raise PlanningConfigError(full, f"'{parts[0]}' has no sub-fields")
        return replace(obj, **{parts[0]: _override_one(current, parts[1:], value, full)})
    if is_dataclass(current):
        raise PlanningConfigError(full, "is a section; set one of its fields")
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise PlanningConfigError(full, f"must be true or false, got {value!r}")
    elif isinstance(current, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PlanningConfigError(full, f"must be a number, got {value!r}")
        value = type(current)(value) if isinstance(current, float) or float(value).is_integer() else value
    elif isinstance(current, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise PlanningConfigError(full, f"must be a list of numbers, got {value!r}")
        value = tuple(float(v) for v in value)
    elif isinstance(current, str) and not isinstance(value, str):
        raise PlanningConfigError(full, f"must be a string, got {value!r}")
    return replace(obj, **{parts[0]: value})
