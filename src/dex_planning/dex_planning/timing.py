"""Time parameterisation of a joint-space path with TOPP-RA, and the dense limit check.

Path geometry: the collision-checked polyline of waypoints becomes either

* one smooth cubic spline (``toppra.SplineInterpolator``) through the waypoints densified along each
  segment (so it hugs the polyline and only rounds the corners), or
* rest-to-rest straight segments: each segment is its own (linear) path, the trajectory stops at
  every waypoint; the geometry is then exactly the checked polyline. On a straight line with box
  velocity/acceleration limits the time-optimal law (what TOPP-RA converges to) is the trapezoid
  in the path parameter, which :class:`TrapezoidSegment` computes exactly, so the limits hold at
  every instant and no grid is needed.

Timing: TOPP-RA (``toppra.algorithm.TOPPRA``) with joint velocity and acceleration constraints at
``(1 - margin)`` x the limits on a grid of N points, then a constant-path-acceleration
interpolation between grid points (the scheme of ``toppra.ParametrizeConstAccel``, evaluated here
vectorised). TOPP-RA only enforces the limits AT grid points, so the result is sampled densely in
time and the ratios ``|qd|/vlim``, ``|qdd|/alim`` are measured; if a ratio exceeds 1 the margin is
doubled and TOPP-RA runs again.

Shapes: waypoints (W, n) [rad]; limits (n,) [rad/s], [rad/s^2].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dex_planning.errors import PlanningError


class TimingError(PlanningError):
    """TOPP-RA found no parameterisation, or the limits could not be met."""


@dataclass
class TimedPath:
    """A path ``q(s)`` with a time law ``s(t)`` from TOPP-RA (constant path acceleration per grid cell).

    Attributes:
        path: The geometric path (``toppra.SplineInterpolator``): ``path(s, order)``.
        ss: (N,) grid of path parameters.
        sd: (N,) path velocities at the grid points.
        ts: (N,) times of the grid points [s].
        us: (N-1,) path accelerations per cell.
    """

    path: object
    ss: np.ndarray
    sd: np.ndarray
    ts: np.ndarray
    us: np.ndarray

    @property
    def duration(self) -> float:
        return float(self.ts[-1])

    def params(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(s, sd, sdd)`` at times ``t`` (K,) [s]."""
        t = np.clip(np.asarray(t, dtype=np.float64), 0.0, self.duration)
        idx = np.clip(np.searchsorted(self.ts, t, side="right") - 1, 0, len(self.us) - 1)
        dt = t - self.ts[idx]
        u = self.us[idx]
        s = np.clip(self.ss[idx] + self.sd[idx] * dt + 0.5 * u * dt * dt, self.ss[0], self.ss[-1])
        return s, self.sd[idx] + u * dt, u

    def evaluate(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(q, qd, qdd)`` (K, n) at times ``t`` (K,)."""
        s, sd, sdd = self.params(t)
        d1 = self.path(s, 1)
        q = self.path(s)
        return q, d1 * sd[:, None], self.path(s, 2) * (sd * sd)[:, None] + d1 * sdd[:, None]


@dataclass
class TrapezoidSegment:
    """Time-optimal rest-to-rest motion along the straight line ``a -> b`` within box limits.

    ``q(t) = a + s(t) (b - a)`` with ``s`` following a trapezoidal (or triangular) velocity profile
    whose peak path velocity and acceleration are ``min_i vlim_i / |b_i - a_i|`` and
    ``min_i alim_i / |b_i - a_i|``: the joint that binds reaches its limit exactly, no joint exceeds it.
    """

    a: np.ndarray
    b: np.ndarray
    sd_max: float
    sdd_max: float
    t_acc: float
    t_cruise: float

    @staticmethod
    def plan(a: np.ndarray, b: np.ndarray, vlim: np.ndarray, alim: np.ndarray, margin: float) -> "TrapezoidSegment":
        delta = np.abs(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64))
        if delta.max() < 1e-12:
            raise TimingError("segment has zero length")
        with np.errstate(divide="ignore"):
            sd_max = float(np.min(np.where(delta > 0, (1 - margin) * vlim / delta, np.inf)))
            sdd_max = float(np.min(np.where(delta > 0, (1 - margin) * alim / delta, np.inf)))
        if sd_max * sd_max / sdd_max >= 1.0:  # triangular: the top speed is never reached
            t_acc = float(np.sqrt(1.0 / sdd_max))
            sd_max = sdd_max * t_acc
            t_cruise = 0.0
        else:
            t_acc = sd_max / sdd_max
            t_cruise = (1.0 - sd_max * t_acc) / sd_max
        return TrapezoidSegment(np.asarray(a, float), np.asarray(b, float), sd_max, sdd_max, t_acc, t_cruise)

    @property
    def duration(self) -> float:
        return 2 * self.t_acc + self.t_cruise

    def evaluate(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(q, qd, qdd)`` (K, n) at times ``t`` (K,) [s]."""
        t = np.clip(np.asarray(t, dtype=np.float64), 0.0, self.duration)
        ta, tc, T, A, V = self.t_acc, self.t_cruise, self.duration, self.sdd_max, self.sd_max
        s = np.where(t < ta, 0.5 * A * t * t,
                     np.where(t < ta + tc, 0.5 * A * ta * ta + V * (t - ta), 1.0 - 0.5 * A * (T - t) ** 2))
        sd = np.where(t < ta, A * t, np.where(t < ta + tc, V, A * (T - t)))
        sdd = np.where(t < ta, A, np.where(t < ta + tc, 0.0, -A))
        d = self.b - self.a
        return self.a + s[:, None] * d, sd[:, None] * d, sdd[:, None] * d


def spline_path(waypoints: np.ndarray, densify: float | None):
    """Cubic spline through the waypoints, parameterised by joint-space arc length [rad].

    ``densify`` [rad]: extra points inserted along each segment at this spacing (None: none).
    Two waypoints give a straight line.
    """
    import toppra as ta

    pts = [waypoints[0]]
    for a, b in zip(waypoints[:-1], waypoints[1:]):
        L = float(np.linalg.norm(b - a))
        n = max(1, int(np.ceil(L / densify))) if densify else 1
        for k in range(1, n + 1):
            pts.append(a + (b - a) * k / n)
    pts = np.array(pts)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    pts = pts[keep]
    ss = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    if len(pts) < 2:
        raise TimingError("path has zero length")
    return ta.SplineInterpolator(ss, pts)


def parameterize(path, vlim: np.ndarray, alim: np.ndarray, margin: float, gridpoints: int) -> TimedPath:
    """TOPP-RA on ``path`` with ``(1 - margin)`` x the limits, rest to rest.

    Raises:
        TimingError: TOPP-RA failed (e.g. an infeasible path).
    """
    import toppra.algorithm as algo
    import toppra.constraint as constraint

    scale = 1.0 - margin
    v = np.asarray(vlim, dtype=np.float64) * scale
    a = np.asarray(alim, dtype=np.float64) * scale
    pc_vel = constraint.JointVelocityConstraint(np.stack([-v, v], 1))
    pc_acc = constraint.JointAccelerationConstraint(np.stack([-a, a], 1))
    s_end = float(path.path_interval[1])
    grid = np.linspace(0.0, s_end, int(gridpoints))
    instance = algo.TOPPRA([pc_vel, pc_acc], path, gridpoints=grid, parametrizer="ParametrizeConstAccel")
    out = instance.compute_parameterization(0.0, 0.0)
    sdd, sd = out[0], out[1]
    if sd is None or sdd is None or not np.all(np.isfinite(sd)):
        raise TimingError("TOPP-RA found no feasible time parameterisation")
    sd = np.maximum(np.asarray(sd, dtype=np.float64), 0.0)
    ds = np.diff(grid)
    denom = sd[:-1] + sd[1:]
    if np.any(denom <= 0):
        raise TimingError("TOPP-RA parameterisation stalls (zero path velocity inside the path)")
    ts = np.concatenate([[0.0], np.cumsum(2 * ds / denom)])
    us = (sd[1:] ** 2 - sd[:-1] ** 2) / (2 * ds)
    return TimedPath(path, grid, sd, ts, us)


def limit_ratios(qd: np.ndarray, qdd: np.ndarray, vlim: np.ndarray, alim: np.ndarray) -> tuple[float, float]:
    """(max |qd|/vlim, max |qdd|/alim) over samples and joints."""
    return float(np.max(np.abs(qd) / vlim)), float(np.max(np.abs(qdd) / alim))


def sample_times(duration: float, dt: float) -> np.ndarray:
    """``0, dt, 2 dt, ..., duration`` (the end always included)."""
    n = max(1, int(np.ceil(duration / dt - 1e-9)))
    t = np.arange(n + 1) * dt
    t[-1] = duration
    return np.minimum(t, duration)
