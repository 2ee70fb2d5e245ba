"""Driver-like commands for the simulated hardware, as plain Python (no ROS types), and their checks.

The real drivers' interfaces (robot YAML ``driver`` sections) are mirrored exactly:

* arm: ``trajectory_msgs/JointTrajectory`` semantics -> :class:`JointTrajectoryCommand`
  (joint names + points with positions [+ velocities [+ accelerations]] and ``time_from_start``);
  executed like ros2_control's ``joint_trajectory_controller``: a new trajectory replaces the
  current one, the controller interpolates from the state at receipt to the first point, between
  points linearly (positions only), cubic Hermite (+ velocities) or quintic (+ accelerations),
  and holds the last point.
* hand, LEAP: ``sensor_msgs/JointState`` on ``cmd_leap`` -> :class:`JointStateCommand` (positions
  in the driver's order and convention, e.g. ``+pi`` offset; names optional as on the hardware).
* hand, Shadow: ``JointTrajectory`` with the 20 actuated names (``rh_FFJ0`` = FFJ1 + FFJ2).

Every malformed command raises :class:`CommandRejected` with a reason; nothing is applied then.
Velocity limits are enforced twice, like the real controllers: a trajectory whose implied
velocity exceeds the limit (beyond a tolerance) is rejected, and the set-point fed to the servos
is rate-limited to the velocity limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dex_description.errors import DescriptionError


class SimError(DescriptionError):
    """Base class of dex_sim's run-time errors."""


class CommandRejected(SimError):
    """A command was malformed or unsafe and was not applied. ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class TrajectoryPoint:
    """One point of a joint trajectory (``trajectory_msgs/JointTrajectoryPoint``).

    Attributes:
        positions: (n,) [rad] in the command's joint-name order.
        time_from_start: [s] since the trajectory start.
        velocities: (n,) [rad/s] or None.
        accelerations: (n,) [rad/s^2] or None.
    """

    positions: Sequence[float]
    time_from_start: float
    velocities: Sequence[float] | None = None
    accelerations: Sequence[float] | None = None


@dataclass(frozen=True)
class JointTrajectoryCommand:
    """A joint trajectory (``trajectory_msgs/JointTrajectory``): names + points."""

    joint_names: Sequence[str]
    points: Sequence[TrajectoryPoint]


@dataclass(frozen=True)
class JointStateCommand:
    """Joint targets as a ``sensor_msgs/JointState`` (LEAP's ``cmd_leap``): ``positions`` in the
    driver's convention; ``names`` empty (driver order) or a permutation of the driver's names."""

    positions: Sequence[float]
    names: Sequence[str] = field(default_factory=tuple)


@dataclass
class Channel:
    """How one device (arm or hand) is commanded, in the driver's terms.

    Attributes:
        device: ``arm`` or ``hand`` (for messages).
        names: (m,) driver names of the command vector.
        scale, offset: (m,) ``driver = scale * servo + offset`` per command entry.
        lower, upper: (m,) servo-space position limits [rad].
        vel_limit: (m,) servo-space velocity limits [rad/s].
        kind: ``trajectory`` or ``joint_state``.
    """

    device: str
    names: list[str]
    scale: np.ndarray
    offset: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    vel_limit: np.ndarray
    kind: str = "trajectory"

    def to_servo(self, driver_values: np.ndarray) -> np.ndarray:
        return (np.asarray(driver_values, dtype=np.float64) - self.offset) / self.scale


@dataclass
class Plan:
    """A validated trajectory in servo space, absolute times [s] (sim clock)."""

    times: np.ndarray  # (k,)
    positions: np.ndarray  # (k, m)
    velocities: np.ndarray | None  # (k, m)
    accelerations: np.ndarray | None  # (k, m)

    def sample(self, t: float) -> np.ndarray:
        """Desired positions (m,) at time ``t`` (holds the ends)."""
        ts, ps = self.times, self.positions
        if t <= ts[0]:
            return ps[0].copy()
        if t >= ts[-1]:
            return ps[-1].copy()
        k = int(np.searchsorted(ts, t, side="right")) - 1
        dt = ts[k + 1] - ts[k]
        s = (t - ts[k]) / dt
        p0, p1 = ps[k], ps[k + 1]
        if self.velocities is None:
            return p0 + s * (p1 - p0)
        v0, v1 = self.velocities[k] * dt, self.velocities[k + 1] * dt
        if self.accelerations is None:  # cubic Hermite
            h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
            return h00 * p0 + h10 * v0 + h01 * p1 + h11 * v1
        a0, a1 = self.accelerations[k] * dt * dt, self.accelerations[k + 1] * dt * dt  # quintic Hermite
        h0 = 1 - 10 * s**3 + 15 * s**4 - 6 * s**5
        h1 = s - 6 * s**3 + 8 * s**4 - 3 * s**5
        h2 = 0.5 * s**2 - 1.5 * s**3 + 1.5 * s**4 - 0.5 * s**5
        h3 = 0.5 * s**3 - s**4 + 0.5 * s**5
        h4 = -4 * s**3 + 7 * s**4 - 3 * s**5
        h5 = 10 * s**3 - 15 * s**4 + 6 * s**5
        return h0 * p0 + h1 * v0 + h2 * a0 + h3 * a1 + h4 * v1 + h5 * p1

    @property
    def end_time(self) -> float:
        return float(self.times[-1])


@dataclass(frozen=True)
class Tolerances:
    """Acceptance tolerances of command validation.

    Attributes:
        position_limit: [rad] how far beyond a joint limit a target may be (then clipped).
        velocity_ratio: Accept implied/declared velocities up to ``(1 + velocity_ratio) * limit``.
        start_position: [rad] max distance of a ``time_from_start = 0`` first point from the
            current set-point (anything else would be a jump).
    """

    position_limit: float = 1e-4
    velocity_ratio: float = 0.05
    start_position: float = 0.05


def _vector(values, n: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(list(values) if values is not None else [], dtype=np.float64)
    except (TypeError, ValueError):
        raise CommandRejected(f"{what} must be numbers") from None
    if arr.shape != (n,):
        raise CommandRejected(f"{what} has {arr.size} values, expected {n} (one per joint name)")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise CommandRejected(f"{what} contains NaN/inf (entry {bad})")
    return arr


def _order(channel: Channel, names: Sequence[str]) -> np.ndarray:
    """Index map: command entry i -> channel entry order[i]; all channel names required once."""
    names = [str(n) for n in names]
    unknown = [n for n in names if n not in channel.names]
    if unknown:
        raise CommandRejected(f"unknown {channel.device} joint name(s) {unknown}; expected {channel.names}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CommandRejected(f"duplicate {channel.device} joint name(s) {dup}")
    missing = [n for n in channel.names if n not in names]
    if missing:
        raise CommandRejected(f"{channel.device} command misses joint(s) {missing} (partial goals are not accepted)")
    return np.array([channel.names.index(n) for n in names])


def _check_limits(channel: Channel, q: np.ndarray, tol: float, what: str) -> np.ndarray:
    low = q < channel.lower - tol
    high = q > channel.upper + tol
    if np.any(low | high):
        i = int(np.flatnonzero(low | high)[0])
        raise CommandRejected(f"{what}: {channel.names[i]} = {q[i]:.4f} rad (servo space) is outside the joint limits "
                              f"[{channel.lower[i]:.4f}, {channel.upper[i]:.4f}]")
    return np.clip(q, channel.lower, channel.upper)


def validate_trajectory(channel: Channel, cmd: JointTrajectoryCommand, now: float, current: np.ndarray,
                        tol: Tolerances = Tolerances()) -> Plan:
    """Check a trajectory against a channel; return it in servo space with absolute times.

    Args:
        channel: The device's command channel.
        cmd: The command (driver names and convention).
        now: Current sim time [s] (the trajectory starts now, like a zero header stamp).
        current: (m,) current servo set-point (start of the interpolation to the first point).

    Raises:
        CommandRejected: Empty, unknown/duplicate/missing names, wrong lengths, NaN/inf,
            non-increasing or negative times, out-of-limit positions, velocities over the limits.
    """
    if not isinstance(cmd, JointTrajectoryCommand):
        raise CommandRejected(f"{channel.device} expects a JointTrajectoryCommand, got {type(cmd).__name__}")
    if not cmd.joint_names:
        raise CommandRejected(f"empty {channel.device} trajectory: no joint names")
    if not cmd.points:
        raise CommandRejected(f"empty {channel.device} trajectory: no points")
    order = _order(channel, cmd.joint_names)
    m = len(channel.names)
    times, pos, vel, acc = [], [], [], []
    has_vel = all(p.velocities is not None and len(p.velocities) > 0 for p in cmd.points)
    has_acc = has_vel and all(p.accelerations is not None and len(p.accelerations) > 0 for p in cmd.points)
    for k, p in enumerate(cmd.points):
        t = float(p.time_from_start)
        if not np.isfinite(t) or t < 0:
            raise CommandRejected(f"point {k}: time_from_start {t} must be finite and >= 0")
        if times and t <= times[-1]:
            raise CommandRejected(f"point {k}: time_from_start {t:.4f} s is not after point {k - 1}'s {times[-1]:.4f} s")
        times.append(t)
        q = np.empty(m)
        q[order] = channel.to_servo(_vector(p.positions, m, f"point {k} positions"))
        pos.append(_check_limits(channel, q, tol.position_limit, f"point {k}"))
        if has_vel:
            v = np.empty(m)
            v[order] = _vector(p.velocities, m, f"point {k} velocities") / channel.scale[order]
            over = np.abs(v) > channel.vel_limit * (1 + tol.velocity_ratio)
            if np.any(over):
                i = int(np.flatnonzero(over)[0])
                raise CommandRejected(f"point {k}: velocity of {channel.names[i]} {v[i]:.3f} rad/s exceeds the limit "
                                      f"{channel.vel_limit[i]:.3f} rad/s")
            vel.append(v)
        if has_acc:
            a = np.empty(m)
            a[order] = _vector(p.accelerations, m, f"point {k} accelerations") / channel.scale[order]
            acc.append(a)
    pos_arr = np.array(pos)
    t_arr = np.array(times)
    if t_arr[0] == 0.0:
        jump = np.abs(pos_arr[0] - current)
        if np.any(jump > tol.start_position):
            i = int(np.argmax(jump))
            raise CommandRejected(f"point 0 has time_from_start 0 but {channel.names[i]} is {jump[i]:.3f} rad from the "
                                  f"current position (a jump; give the first point a time > 0)")
        full_t, full_p = t_arr, pos_arr
        full_v = np.array(vel) if has_vel else None
        full_a = np.array(acc) if has_acc else None
    else:  # interpolate from the current set-point (at rest) to the first point
        full_t = np.concatenate([[0.0], t_arr])
        full_p = np.vstack([current, pos_arr])
        full_v = np.vstack([np.zeros(m), vel]) if has_vel else None
        full_a = np.vstack([np.zeros(m), acc]) if has_acc else None
    seg_v = np.abs(np.diff(full_p, axis=0)) / np.diff(full_t)[:, None]
    over = seg_v > channel.vel_limit * (1 + tol.velocity_ratio)
    if np.any(over):
        k, i = (int(x) for x in np.argwhere(over)[0])
        raise CommandRejected(f"segment {k}->{k + 1} moves {channel.names[i]} at {seg_v[k, i]:.3f} rad/s on average, above "
                              f"the velocity limit {channel.vel_limit[i]:.3f} rad/s")
    return Plan(now + full_t, full_p, full_v, full_a)


def validate_joint_state(channel: Channel, cmd: JointStateCommand, tol: Tolerances = Tolerances()) -> np.ndarray:
    """Check a JointState position command; return the servo-space target (m,).

    Raises:
        CommandRejected: Empty, wrong length, unknown/duplicate/missing names, NaN/inf, out of limits.
    """
    if not isinstance(cmd, JointStateCommand):
        raise CommandRejected(f"{channel.device} expects a JointStateCommand, got {type(cmd).__name__}")
    m = len(channel.names)
    if cmd.positions is None or len(cmd.positions) == 0:
        raise CommandRejected(f"empty {channel.device} command: no positions")
    values = _vector(cmd.positions, len(cmd.names) if cmd.names else m, "positions")
    q = np.empty(m)
    if cmd.names:
        order = _order(channel, cmd.names)
        q[order] = (values - channel.offset[order]) / channel.scale[order]
    else:
        q[:] = channel.to_servo(values)
    return _check_limits(channel, q, tol.position_limit, "target")
