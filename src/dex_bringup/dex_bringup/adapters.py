"""Translations for the real-hardware adapter nodes, ROS-free (nodes: :mod:`dex_bringup.leap_adapter`,
:mod:`dex_bringup.shadow_adapter`).

The robot YAMLs' ``driver`` sections say what the rest of dexgrasp sends and expects on the hand
topics (:mod:`dex_description.drivers`). Two hands need an adapter between that and the vendor's
own software:

* **LEAP** (LEAP_Hand_API ``ros2_module``, node ``leaphand_node``) takes commands on ``cmd_leap``
  (``sensor_msgs/JointState``) but serves its state only through services (``leap_position``,
  ``leap_velocity``, ``leap_effort``, ``leap_pos_vel``, ``leap_pos_vel_eff``) returning bare
  ``float64[]`` vectors in hardware order: motor ids 0..15 = index, middle, ring, thumb; per
  finger MCP side, MCP forward, PIP, DIP; positions [rad] with 180 deg (pi) = flat, velocities
  [rad/s], "effort" = motor current [mA]. :func:`leap_state` turns such a response into the
  driver's joint-state vector (names ``"0"``..``"15"``, same convention as ``cmd_leap``).
* **Shadow** (Shadow Robot's own driver): a finger trajectory controller (22 joints: J1 and J2
  of each finger separately; the driver sums them into the tendon-coupled J0) and a wrist
  trajectory controller (``rh_WRJ1``, ``rh_WRJ2``), state on ``/joint_states`` with the 24
  ``rh_`` joint names. :class:`ShadowTranslator` converts our topic pair (commands in the
  YAML's command space, e.g. 20 actuators with ``rh_FFJ0 = FFJ1 + FFJ2``; states with the 24
  joints) to and from those. Shadow's driver names its joints like the model (``rh_FFJ1`` ...,
  sr_description's names, which the Menagerie model keeps).

All name/offset/scale conversions go through :class:`dex_description.drivers.DriverMap`; the
actuator -> joints split is :meth:`dex_description.config.HandConfig.joints_from_actuated` (coupled
joints get equal shares). Velocities and accelerations are converted by the maps' linear part
only (no offset). Every problem with an input raises :class:`AdapterError` with a reason; the
nodes log it and keep running.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from dex_description.config import HandConfig
from dex_description.drivers import DriverMap, DriverMappingError, hand_command_map, hand_state_map
from dex_description.errors import DescriptionError


class AdapterError(DescriptionError):
    """An input the adapter cannot translate (wrong length, NaN, unknown names, missing type)."""


# ------------------------------------------------------------------------------------------------
# shared


@dataclass(frozen=True)
class JointSample:
    """One joint state (``sensor_msgs/JointState`` without the header).

    Attributes:
        names: (n,) joint names.
        position: (n,) [rad].
        velocity: (n,) [rad/s] or None (not published: empty array).
        effort: (n,) [N m] (or the vendor's unit, see the producer) or None.
    """

    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray | None = None
    effort: np.ndarray | None = None


def _finite_vector(values: Any, n: int, what: str) -> np.ndarray:
    """``values`` as an (n,) float array; AdapterError on a wrong length or a non-finite entry."""
    try:
        arr = np.asarray(list(values) if values is not None else [], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise AdapterError(f"{what} must be numbers") from None
    if arr.shape[0] != n:
        raise AdapterError(f"{what} has {arr.shape[0]} values, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise AdapterError(f"{what} has non-finite value(s) at index {np.flatnonzero(~np.isfinite(arr)).tolist()}")
    return arr


def _optional_vector(values: Any, n: int, what: str, notes: list[str]) -> np.ndarray | None:
    """An optional per-joint vector: None when absent/empty; None plus a note when unusable."""
    if values is None or len(values) == 0:
        return None
    try:
        return _finite_vector(values, n, what)
    except AdapterError as exc:
        notes.append(f"{exc}; left out")
        return None


def _linear(m: DriverMap, names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    """Driver -> model for a rate (velocity, acceleration): the map without its offset."""
    full = m.from_driver(names, values)
    zero = m.from_driver(names, np.zeros(len(names)))
    return {k: full[k] - zero[k] for k in full}


def _linear_to_driver(m: DriverMap, model: Mapping[str, float]) -> np.ndarray:
    """Model -> driver for a rate (velocity): ``scale * model`` (no offset)."""
    return m.to_driver(model) - m.to_driver({s: 0.0 for s in m.sources})


def import_interface(type_name: str) -> type:
    """A ROS interface class from ``pkg.srv.Type`` or ``pkg/srv/Type`` (also ``msg``/``action``).

    Imported lazily so that a node can name a type from a package that is not installed here
    (LEAP's ``leap_hand``) and fail with a message that says what to do.

    Raises:
        AdapterError: Malformed name, package not importable, or no such type in it.
    """
    m = re.fullmatch(r"([A-Za-z_]\w*)[./](srv|msg|action)[./]([A-Za-z_]\w*)", type_name.strip())
    if m is None:
        raise AdapterError(f"interface type '{type_name}' is not of the form package.srv.Type (or package/srv/Type)")
    pkg, kind, name = m.groups()
    try:
        module = importlib.import_module(f"{pkg}.{kind}")
    except ImportError as exc:
        raise AdapterError(f"cannot import the interface package '{pkg}.{kind}' for '{type_name}' "
                           f"({type(exc).__name__}: {exc})") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise AdapterError(f"'{pkg}.{kind}' has no type '{name}'")
    return cls


# ------------------------------------------------------------------------------------------------
# LEAP


def leap_state(driver: DriverMap, position: Any, velocity: Any = None, current: Any = None,
               names: Sequence[str] = (), effort_per_ma: float = 0.0) -> tuple[JointSample, list[str]]:
    """A LEAP state reading (service response or raw topic) -> the driver's joint-state vector.

    Args:
        driver: The hand's state map (:func:`dex_description.drivers.hand_state_map`); its names
            (``"0"``..``"15"``) and order are the hardware's.
        position: (n,) [rad] in the driver's convention (LEAP: pi = flat).
        velocity: (n,) [rad/s] or None/empty.
        current: (n,) motor current [mA] or None/empty.
        names: Empty: the vectors are in hardware order (as LEAP's services return them);
            otherwise a permutation of ``driver.names`` giving each entry's joint.
        effort_per_ma: [N m/mA] effort = ``effort_per_ma * current``; 0 leaves effort out (the
            current-to-torque relation of the Dynamixels is not linear enough to assume one).

    Returns:
        (sample in driver order with driver names, notes on fields that were left out).

    Raises:
        AdapterError: Position missing, of the wrong length, non-finite, or names that are not
            a permutation of the driver's.
    """
    n = len(driver.names)
    pos = _finite_vector(position, n, "position")
    if names:
        try:
            driver.from_driver(names, pos, require_all=True)  # names: known, unique, complete
        except DriverMappingError as exc:
            raise AdapterError(str(exc)) from None
        order = [list(names).index(d) for d in driver.names]
    else:
        order = list(range(n))
    notes: list[str] = []
    vel = _optional_vector(velocity, n, "velocity", notes)
    cur = _optional_vector(current, n, "current", notes)
    effort = cur * float(effort_per_ma) if (cur is not None and effort_per_ma > 0.0) else None
    return JointSample(
        tuple(driver.names), pos[order],
        vel[order] if vel is not None else None,
        effort[order] if effort is not None else None,
    ), notes


# ------------------------------------------------------------------------------------------------
# Shadow


@dataclass(frozen=True)
class Trajectory:
    """A joint trajectory (``trajectory_msgs/JointTrajectory`` without the header) as arrays.

    Attributes:
        joint_names: (n,) names.
        times: (k,) ``time_from_start`` [s].
        positions: (k, n) [rad].
        velocities: (k, n) [rad/s] or None.
        accelerations: (k, n) [rad/s^2] or None.
    """

    joint_names: tuple[str, ...]
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None = None
    accelerations: np.ndarray | None = None

    @staticmethod
    def from_points(joint_names: Sequence[str], points: Sequence[Mapping[str, Any]]) -> "Trajectory":
        """Validated arrays from per-point ``{positions, velocities, accelerations, time_from_start}``.

        Velocities (accelerations) must be given for every point or for none.

        Raises:
            AdapterError: No points, wrong lengths, NaN, mixed presence, or times that decrease.
        """
        names = tuple(str(n) for n in joint_names)
        if not points:
            raise AdapterError("trajectory has no points")
        n = len(names)
        pos = np.stack([_finite_vector(p.get("positions"), n, f"points[{i}].positions") for i, p in enumerate(points)])
        rates = {}
        for key in ("velocities", "accelerations"):
            given = [p.get(key) is not None and len(p[key]) > 0 for p in points]
            if any(given) and not all(given):
                raise AdapterError(f"{key} given for some points only")
            rates[key] = (np.stack([_finite_vector(p[key], n, f"points[{i}].{key}") for i, p in enumerate(points)])
                          if all(given) else None)
        times = np.array([float(p.get("time_from_start", 0.0)) for p in points])
        if not np.all(np.isfinite(times)) or np.any(times < 0) or np.any(np.diff(times) <= 0):
            raise AdapterError(f"time_from_start must be >= 0 and strictly increasing, got {times.tolist()}")
        return Trajectory(names, times, pos, rates["velocities"], rates["accelerations"])

    def select(self, names: Sequence[str]) -> "Trajectory":
        """The same trajectory restricted to ``names`` (in that order)."""
        idx = [self.joint_names.index(n) for n in names]
        pick = (lambda a: a[:, idx] if a is not None else None)
        return Trajectory(tuple(names), self.times.copy(), self.positions[:, idx], pick(self.velocities),
                          pick(self.accelerations))


class ShadowTranslator:
    """Our Shadow topic pair <-> Shadow Robot's driver.

    Args:
        hand: The hand config (its ``driver`` section describes *our* pair).
        wrist_joints: Joints Shadow drives with a separate wrist controller; empty: one
            controller for all joints.
    """

    def __init__(self, hand: HandConfig, wrist_joints: Sequence[str] = ("rh_WRJ2", "rh_WRJ1")):
        self.hand = hand
        self.command = hand_command_map(hand)  # our command vector
        self.state = hand_state_map(hand)  # our state vector
        unknown = [w for w in wrist_joints if w not in hand.joints]
        if unknown:
            raise AdapterError(f"wrist joint(s) {unknown} are not joints of hand '{hand.name}'")
        self.wrist_joints = tuple(j for j in hand.joints if j in set(wrist_joints))
        self.finger_joints = tuple(j for j in hand.joints if j not in set(wrist_joints))
        self._actuated = hand.driver.command_space == "actuated"

    @property
    def shadow_joints(self) -> tuple[str, ...]:
        """Joint names of Shadow's driver (= the model's), model order."""
        return tuple(self.hand.joints)

    def _model_rows(self, names: Sequence[str], rows: np.ndarray, rate: bool) -> np.ndarray:
        """Our command rows (k, n) -> model joint rows (k, n_joints) in ``hand.joints`` order."""
        order = self.hand.actuated_names if self._actuated else self.hand.joints
        out = []
        for row in rows:
            try:
                d = _linear(self.command, names, row) if rate else self.command.from_driver(names, row, require_all=True)
            except DriverMappingError as exc:
                raise AdapterError(str(exc)) from None
            out.append([d[s] for s in order])
        model = np.asarray(out, dtype=np.float64)
        return self.hand.joints_from_actuated(model) if self._actuated else model

    def command_to_shadow(self, traj: Trajectory) -> dict[str, Trajectory]:
        """Our hand command -> Shadow's controller commands.

        Returns:
            ``{"fingers": ..., "wrist": ...}`` (no ``wrist`` entry when there are no wrist joints)
            in Shadow's joint names, model order, same times.

        Raises:
            AdapterError: Names that are not exactly our command vector's (partial goals are
                rejected, like the simulated twin does), or bad values.
        """
        missing = [n for n in self.command.names if n not in traj.joint_names]
        if missing:
            raise AdapterError(f"hand command misses joint(s) {missing} (partial goals are not accepted)")
        pos = self._model_rows(traj.joint_names, traj.positions, rate=False)
        vel = self._model_rows(traj.joint_names, traj.velocities, rate=True) if traj.velocities is not None else None
        acc = (self._model_rows(traj.joint_names, traj.accelerations, rate=True)
               if traj.accelerations is not None else None)
        full = Trajectory(self.shadow_joints, traj.times.copy(), pos, vel, acc)
        out = {"fingers": full.select(self.finger_joints)}
        if self.wrist_joints:
            out["wrist"] = full.select(self.wrist_joints)
        return out

    def state_from_shadow(self, names: Sequence[str], position: Any, velocity: Any = None,
                          effort: Any = None) -> tuple[JointSample | None, list[str]]:
        """Shadow's ``/joint_states`` -> our hand state (``self.state`` names and convention).

        Entries that are not hand joints (e.g. the UR's joints on a shared ``/joint_states``) are
        ignored. Effort is passed through in Shadow's unit.

        Returns:
            (sample, notes); sample is None when the message holds no hand joint at all.

        Raises:
            AdapterError: Some but not all hand joints, duplicates, lengths that disagree with
                the names, or non-finite positions.
        """
        names = [str(n) for n in names]
        pos_all = np.asarray(list(position) if position is not None else [], dtype=np.float64).reshape(-1)
        if pos_all.shape[0] != len(names):
            raise AdapterError(f"{len(names)} names but {pos_all.shape[0]} positions")
        wanted = set(self.shadow_joints)
        idx = [i for i, n in enumerate(names) if n in wanted]
        if not idx:
            return None, []
        mine = [names[i] for i in idx]
        if len(set(mine)) != len(mine):
            raise AdapterError(f"duplicate hand joint names in {mine}")
        missing = [j for j in self.shadow_joints if j not in mine]
        if missing:
            raise AdapterError(f"joint state misses hand joint(s) {missing}")
        pos = _finite_vector(pos_all[idx], len(idx), "position")
        notes: list[str] = []

        def per_joint(values: Any, what: str) -> np.ndarray | None:
            if values is None or len(values) == 0:
                return None
            if len(values) != len(names):
                notes.append(f"{what} has {len(values)} values for {len(names)} names; left out")
                return None
            return _optional_vector([values[i] for i in idx], len(idx), what, notes)

        vel, eff = per_joint(velocity, "velocity"), per_joint(effort, "effort")
        model_pos = dict(zip(mine, pos))
        out_pos = self.state.to_driver(model_pos)
        out_vel = _linear_to_driver(self.state, dict(zip(mine, vel))) if vel is not None else None
        out_eff = None
        if eff is not None:
            by_name = dict(zip(mine, eff))
            out_eff = np.array([by_name[s] for s in self.state.sources])
        return JointSample(tuple(self.state.names), out_pos, out_vel, out_eff), notes
