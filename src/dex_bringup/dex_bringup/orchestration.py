"""ROS-free parts of the grasp orchestrator (:mod:`dex_bringup.orchestrator`): its settings (one ROS
parameter per field), and the few numeric steps between the nodes' answers and the drivers'
commands, kept here so that the node only adapts messages.

* :class:`OrchestratorSettings` / :func:`settings_from_parameters`: parameters, validated; a bad
  value raises :class:`SettingsError` naming the parameter.
* :func:`reach_stretch` / :func:`retime`: the planned reach is executed no faster than
  ``speed_scale`` x the arm's velocity limits (uniform time scaling: same path, slower).
* :func:`sample_at`: driver targets at the control rate, for hands commanded by streamed
  ``sensor_msgs/JointState`` targets (LEAP).
* :func:`obstacle_points`: the perceived scene minus the table (the planner models the table itself);
  :class:`SelfFilter`: minus the robot's own surface (the camera sees the hand at its home pose).
* :func:`verify_verdict`: the verify stage's decision from perception's answer and the fingers.

Units: [m], [rad], [s]; points in the robot base frame (``base_link``, the planning world); joint
vectors in the robot YAML's model order unless a name says ``driver``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np

from dex_bringup.episode import EpisodeConfig, default_config as default_episode_config
from dex_description.errors import DescriptionError

# SegmentObject statuses that mean "no object there" (the place a lifted object stood is empty);
# every other failure status means perception could not look (no frame, no table, bad calibration ...).
PLACE_EMPTY_STATUSES = ("bad_prompt", "nothing_in_workspace")


class SettingsError(DescriptionError):
    """A parameter of the orchestrator has an invalid value; the message names it."""


def _stage_timeouts() -> dict[str, float]:
    return dict(default_episode_config().timeouts)


@dataclass(frozen=True)
class OrchestratorSettings:
    """The orchestrator's parameters (ROS parameter name = field name; stage timeouts are
    ``timeout_<stage>_s``).

    Attributes:
        robot: Robot combo (``config/robots/<robot>.yaml``).
        executor: Execution policy after the reach (:func:`dex_policy.executor.make_executor`).
        prompt: Perception prompt when a goal has none (``largest``, ``nearest``, ``point x y z`` ...).
        speed_scale: Fraction of the arm's and hand's velocity limits any motion may use (reach
            included, see :func:`reach_stretch`); (0, 1].
        require_confirm: Wait for an operator's ``/dex/confirm_motion`` (std_srvs/SetBool) between
            planning and the first motion (on for the real robot).
        lift_height: [m] default lift when a goal gives none.
        workspace_min, workspace_max: (3,) [m] box in the base frame the wrist must stay inside
            during approach / squeeze / lift (the executor's safety check).
        top_k: Proposals asked of the proposal node (``max_proposals``; <= 0: the node's default).
        proposal_seed: Seed of the synthesis (< 0: the proposal node's default).
        plan_budget_s: [s] planning budget handed to the planning node (capped by the plan timeout).
        control_rate_hz: [Hz] rate of streamed hand targets (JointState hand drivers).
        track_tol: [rad] largest arm joint error at the end of a segment.
        settle_s: [s] time after a segment's nominal end for the arm to come within ``track_tol``.
        preshape_tol: [rad] largest hand actuator error from the pre-grasp shape after the reach
            (coupled joints compared by their sum, see :func:`hand_shape_error`).
        hold_s: [s] time from the stop command to the hold point (stop ramp of the controllers).
        state_timeout_s: [s] joint states older than this mean the driver is silent.
        service_wait_s: [s] how long a stage waits for a service to appear before reporting its node.
        scene_wait_s: [s] how long to wait for perception's scene cloud of the segmented frame.
        table_clearance: [m] scene points less than this above the table are the table.
        self_filter_margin: [m] scene points less than this outside the robot's collision spheres
            (at the measured joints) are the robot itself.
        verify_hold_s: [s] verify holds the lifted object this long before it looks (a slipping
            grasp shows; within the verify timeout).
        verify_extra_height: [m] verify asks perception for the scene with the workspace box's top
            raised this much (the lifted object is above the table scene's box).
        held_radius: [m] verify looks for the lifted object within this distance of where it
            should be (its perceived centroid moved with the wrist since the squeeze).
        held_margin: [m] there, scene points less than this outside the robot's collision spheres
            are the robot.
        min_held_points: verify calls the lifted object held when at least this many scene points
            that are neither the table nor the robot are seen there, or else when the fingers are
            held short of the squeeze target (:func:`verify_verdict`; 0: the fingers alone decide).
        max_attempts: Tries per goal (:class:`dex_bringup.episode.EpisodeConfig`): after a failed
            verify the hand opens where it is and the episode starts again from perception with
            another synthesis seed; after a propose/plan failure it starts again at once.
        timeouts: Stage -> wall-clock limit [s] (``perceive``, ``propose``, ``plan``, ``confirm``,
            ``reach``, ``preshape``, ``approach``, ``squeeze``, ``lift``, ``verify``, ``release``).
    """

    robot: str = "ur5e_leap"
    executor: str = "open_loop"
    prompt: str = "largest"
    speed_scale: float = 0.5
    require_confirm: bool = False
    lift_height: float = 0.25
    workspace_min: tuple[float, float, float] = (-1.4, -1.4, -0.02)
    workspace_max: tuple[float, float, float] = (1.4, 1.4, 1.6)
    top_k: int = 16
    proposal_seed: int = -1
    plan_budget_s: float = 3.0
    control_rate_hz: float = 50.0
    track_tol: float = 0.05
    settle_s: float = 2.0
    preshape_tol: float = 0.15
    hold_s: float = 0.3
    state_timeout_s: float = 1.0
    service_wait_s: float = 5.0
    scene_wait_s: float = 1.0
    table_clearance: float = 0.01
    self_filter_margin: float = 0.03
    verify_hold_s: float = 2.0
    verify_extra_height: float = 0.4
    held_radius: float = 0.12
    held_margin: float = 0.01
    min_held_points: int = 10
    max_attempts: int = 2
    timeouts: dict[str, float] = field(default_factory=_stage_timeouts)

    def episode_config(self) -> EpisodeConfig:
        """The episode's settings (timeouts, lift height, confirmation)."""
        return replace(default_episode_config(), timeouts=dict(self.timeouts), lift_height=self.lift_height,
                       require_confirm=self.require_confirm, max_attempts=self.max_attempts)

    def executor_config(self):
        """:class:`dex_policy.executor.ExecutorConfig` with this speed scale and workspace box."""
        from dex_policy.executor import default_config as executor_defaults

        return replace(executor_defaults(), speed_scale=self.speed_scale, workspace_min=tuple(self.workspace_min),
                       workspace_max=tuple(self.workspace_max))


def parameter_defaults() -> dict[str, Any]:
    """ROS parameter name -> default value (its type is the parameter's type)."""
    d = OrchestratorSettings()
    out: dict[str, Any] = {}
    for f in fields(OrchestratorSettings):
        if f.name == "timeouts":
            continue
        v = getattr(d, f.name)
        out[f.name] = [float(x) for x in v] if isinstance(v, tuple) else v
    for stage, limit in d.timeouts.items():
        out[f"timeout_{stage}_s"] = float(limit)
    return out


def settings_from_parameters(values: Mapping[str, Any]) -> OrchestratorSettings:
    """Settings from ROS parameter values (any subset of :func:`parameter_defaults`; ``3`` is
    accepted for a float).

    Raises:
        SettingsError: Unknown name, wrong type, or a value out of range (the message names it).
    """
    defaults = parameter_defaults()
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise SettingsError(f"unknown parameter(s) {', '.join(unknown)}")
    typed: dict[str, Any] = {}
    for name, default in defaults.items():
        v = values.get(name, default)
        try:
            if isinstance(default, bool):
                if not isinstance(v, bool):
                    raise ValueError("expected true or false")
            elif isinstance(default, int):
                if isinstance(v, bool) or float(v) != int(float(v)):
                    raise ValueError("expected an integer")
                v = int(float(v))
            elif isinstance(default, float):
                if isinstance(v, bool) or not np.isfinite(float(v)):
                    raise ValueError("expected a finite number")
                v = float(v)
            elif isinstance(default, list):
                v = [float(x) for x in v]
                if len(v) != 3 or not np.all(np.isfinite(v)):
                    raise ValueError("expected 3 finite numbers [m]")
                v = tuple(v)
            else:
                v = "" if v is None else str(v)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"parameter {name}: {v!r}: {exc}") from None
        typed[name] = v
    timeouts = {stage: typed.pop(f"timeout_{stage}_s") for stage in _stage_timeouts()}
    s = OrchestratorSettings(**typed, timeouts=timeouts)
    positive = ("max_attempts", "lift_height", "plan_budget_s", "control_rate_hz", "track_tol", "settle_s", "preshape_tol", "hold_s",
                "state_timeout_s", "service_wait_s")
    for name in positive:
        if getattr(s, name) <= 0:
            raise SettingsError(f"parameter {name}: {getattr(s, name)!r}: must be > 0")
    for name in ("scene_wait_s", "table_clearance", "self_filter_margin", "verify_hold_s", "verify_extra_height",
                 "held_radius", "held_margin", "min_held_points"):
        if getattr(s, name) < 0:
            raise SettingsError(f"parameter {name}: {getattr(s, name)!r}: must be >= 0")
    if not 0 < s.speed_scale <= 1:
        raise SettingsError(f"parameter speed_scale: {s.speed_scale!r}: must be in (0, 1]")
    if np.any(np.asarray(s.workspace_min) >= np.asarray(s.workspace_max)):
        raise SettingsError(f"parameters workspace_min {list(s.workspace_min)} / workspace_max {list(s.workspace_max)}: "
                            "min must be below max on every axis")
    for stage, limit in s.timeouts.items():
        if limit <= 0:
            raise SettingsError(f"parameter timeout_{stage}_s: {limit!r}: must be > 0")
    if not s.robot:
        raise SettingsError("parameter robot: empty")
    return s


# ------------------------------------------------------------------------------------------ motion


def reach_stretch(qd_model: np.ndarray, velocity_limits: np.ndarray, speed_scale: float) -> float:
    """Time-stretch factor (>= 1) that brings a planned trajectory's velocities ``qd_model`` (K, n)
    [rad/s] within ``speed_scale`` x ``velocity_limits`` (n,) [rad/s]. 1 when already within."""
    qd = np.abs(np.asarray(qd_model, dtype=np.float64))
    if qd.size == 0:
        return 1.0
    ratio = float((qd / np.asarray(velocity_limits, dtype=np.float64)[None, :]).max())
    return max(1.0, ratio / float(speed_scale))


def retime(t: np.ndarray, qd: np.ndarray | None, qdd: np.ndarray | None, stretch: float):
    """Uniform time scaling of a trajectory by ``stretch`` (>= 1: slower) along the same path.

    Args:
        t: (K,) times from the start [s].
        qd: (K, n) velocities [rad/s] or None; qdd: (K, n) accelerations [rad/s^2] or None.

    Returns:
        ``(t * stretch, qd / stretch, qdd / stretch**2)`` (None stays None).
    """
    s = float(stretch)
    t2 = np.asarray(t, dtype=np.float64) * s
    qd2 = None if qd is None else np.asarray(qd, dtype=np.float64) / s
    qdd2 = None if qdd is None else np.asarray(qdd, dtype=np.float64) / (s * s)
    return t2, qd2, qdd2


def sample_at(tq: float, t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(n,) linear interpolation of ``values`` (K, n) at times ``t`` (K,) [s] at time ``tq`` [s]
    (the ends held)."""
    t = np.asarray(t, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(t) == 1:
        return values[0].copy()
    return np.array([np.interp(tq, t, values[:, j]) for j in range(values.shape[1])])


def tracking_error(measured: np.ndarray, target: np.ndarray) -> float:
    """Largest absolute joint error [rad] between ``measured`` and ``target`` (n,)."""
    return float(np.abs(np.asarray(measured, dtype=np.float64) - np.asarray(target, dtype=np.float64)).max(initial=0.0))


def hand_shape_error(hand, measured: np.ndarray, target: np.ndarray) -> tuple[float, str]:
    """Largest actuator error [rad] of hand joints ``measured`` against ``target`` (n,) and the
    actuator's name. Compared in actuator space (``hand.actuated_from_joints``: a coupled actuator's
    value is the sum of its joints): a position-controlled hand commands actuators, and how a
    tendon-coupled pair (Shadow's J1 + J2) splits its sum after touching an object is not commanded
    (measured: a ring finger whose J1 stayed 0.24 rad from an equal split, with the sum on target,
    failed the pre-shape check of a second attempt joint by joint)."""
    err = np.abs(hand.actuated_from_joints(np.asarray(measured, dtype=np.float64))
                 - hand.actuated_from_joints(np.asarray(target, dtype=np.float64)))
    if not len(err):
        return 0.0, ""
    k = int(np.argmax(err))
    return float(err[k]), str(hand.actuated_names[k])


# ------------------------------------------------------------------------------------------ perception


def table_height(polygon_base: np.ndarray) -> float | None:
    """Height [m] (base frame z) of the table from its outline's vertices (K, 3); None when empty."""
    poly = np.asarray(polygon_base, dtype=np.float64).reshape(-1, 3)
    return float(poly[:, 2].mean()) if len(poly) else None


def obstacle_points(scene_base: np.ndarray, table_z: float | None, clearance: float) -> np.ndarray:
    """(M, 3) scene points [m] (base frame) more than ``clearance`` [m] above the table at height
    ``table_z`` [m]; all finite points when the table is unknown."""
    pts = np.asarray(scene_base, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if table_z is None:
        return pts
    return pts[pts[:, 2] > table_z + clearance]


class SelfFilter:
    """Removes the robot's own surface from a cloud: the points within ``margin`` [m] of its
    collision spheres (``config/robots/spheres``) posed at measured joints.

    Args:
        robot: The robot combo (:class:`dex_description.compose.Robot`); its world is the base frame.
        margin: [m] added to every sphere radius.
    """

    def __init__(self, robot, margin: float):
        import torch

        from dex_description.kinematics import RobotKinematics

        self._torch = torch
        self.kin = RobotKinematics(robot, dtype=torch.float64, with_spheres=True)
        self.margin = float(margin)

    def spheres(self, arm_q: np.ndarray, hand_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(centres (S, 3) [m] base frame, radii (S,) [m])`` at arm joints (6,) and hand joints (n,), model order."""
        q = self._torch.as_tensor(np.concatenate([arm_q, hand_q])[None], dtype=self._torch.float64)
        with self._torch.no_grad():
            centres = self.kin.sphere_centers(self.kin.forward(q))[0].numpy()
        return centres, self.kin.spheres.radii.numpy().astype(np.float64)

    def __call__(self, points_base: np.ndarray, arm_q: np.ndarray, hand_q: np.ndarray,
                 margin: float | None = None) -> np.ndarray:
        """(M, 3) the points of ``points_base`` (N, 3) [m] that are not the robot (``margin`` [m]
        overrides the filter's own)."""
        pts = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
        if len(pts) == 0:
            return pts
        margin = self.margin if margin is None else float(margin)
        centres, radii = self.spheres(arm_q, hand_q)
        keep = np.ones(len(pts), dtype=bool)
        for start in range(0, len(pts), 4096):  # (chunk, S) distances
            chunk = pts[start:start + 4096]
            d = np.linalg.norm(chunk[:, None, :] - centres[None], axis=2) - radii[None]
            keep[start:start + 4096] = d.min(axis=1) > margin
        return pts[keep]


def held_object_points(scene_base: np.ndarray, table_z: float | None, self_filter: SelfFilter, arm_q: np.ndarray,
                       hand_q: np.ndarray, expected_centre: np.ndarray, radius: float, margin: float,
                       clearance: float = 0.01) -> int:
    """How many scene points [m] (base frame) after the lift are neither the table nor the robot
    (``margin`` [m] outside its collision spheres at the measured joints) and lie within ``radius``
    [m] of ``expected_centre`` (3,) [m]: where the grasped object should be if it went up with the
    hand (its perceived centroid moved by the wrist's displacement since the grasp)."""
    above = obstacle_points(scene_base, table_z, clearance)
    if len(above) == 0:
        return 0
    near = above[np.linalg.norm(above - np.asarray(expected_centre, dtype=np.float64)[None], axis=1) < radius]
    return int(len(self_filter(near, arm_q, hand_q, margin)))


def verify_verdict(status: str, message: str, blocked: bool, gap: float, held: int | None = None,
                   min_held: int = 0) -> tuple[bool | None, str]:
    """The verify stage's decision, without ground truth.

    The place the object stood must be empty; then the object counts as lifted when at least
    ``min_held`` scene points are seen where it should be if it went up with the hand (whatever
    the fingers do: light objects let position-controlled fingers come close to the squeeze
    target), or, seen or not, when the fingers are held short of the squeeze target (an object
    hidden from the camera behind the hand). Only an empty place with neither is a drop. Measured on
    the end-to-end benchmark (40 episodes per combo, 104 verify decisions against the simulator's
    state at that moment; ``dexgrasp-e2e-bench`` logs both): the earlier rule (fingers held short
    AND at least 20 points seen) called 15 lifted objects dropped (10 LEAP grasps whose fingers
    reached within 0.05 rad of the target with 16-757 points seen; 5 hidden objects with 0-13
    points seen); this one 1 (no verdict changed for an object that was not lifted, except that one).

    Args:
        status: Perception's SegmentObject status for the prompt ``point`` at the target's pre-grasp
            centroid, on a frame taken after the lift.
        message: Perception's message (for the reason).
        blocked, gap: :func:`dex_policy.executor.fingers_blocked` on the measured hand joints.
        held: :func:`held_object_points` on the same frame (None: not looked at).
        min_held: Seen points that make the object held (<= 0: not used, the fingers decide).

    Returns:
        ``(True, why)`` lifted and held; ``(False, why)`` not; ``(None, why)``: perception could
        not look (its status is neither ``ok`` nor a "nothing there" status), no verdict.
    """
    if status == "ok":
        return False, "verify: the object is still where it stood (not lifted)"
    if status not in PLACE_EMPTY_STATUSES:
        return None, f"verify: perception could not look ({status}: {message})"
    looked = held is not None and min_held > 0
    if looked and held >= min_held:
        return True, (f"object gone from the table and held: seen in the hand ({held} points; fingers {gap:.2f} rad "
                      "short of the squeeze target)")
    if not blocked:
        seen = f" and {held} points seen there" if looked else ""
        return False, (f"verify: the fingers closed on nothing (gap {gap:.3f} rad to the squeeze target){seen}: "
                       "object dropped")
    seen = f"; {held} points seen: hidden behind the hand?" if looked else ""
    return True, f"object gone from the table and held (fingers {gap:.2f} rad short of the squeeze target{seen})"
