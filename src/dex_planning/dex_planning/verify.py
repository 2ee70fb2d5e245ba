"""Independent re-check of planned trajectories in MuJoCo (used by the benchmark and the tests).

Independent of the planner's own checks: it uses the compiled MuJoCo model of the robot (every
hand geom as MuJoCo collides it, not the planner's per-link hulls), the true obstacle primitives
(not the planner's voxelised cloud), the hand's actual joint trajectory (including the pre-shaping
at the start), MuJoCo's own collision detection (``mj_collision``) and finite-difference
derivatives of the sampled positions.

A state is "in collision" when MuJoCo reports a contact with penetration deeper than ``tol``
between the robot and the scene, or between two robot bodies unless both belong to the hand (the
hand's self-contacts are the grasp proposer's business; MuJoCo already skips welded and
parent-child bodies). States are sampled so that no joint moves more than ``max_step`` [rad]
between two checked states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from dex_description.compose import Robot, compile_spec
from dex_planning.interface import Trajectory


@dataclass(frozen=True)
class Primitive:
    """A scene obstacle for MuJoCo: ``kind`` box/cylinder/sphere, MuJoCo ``size`` (half extents;
    cylinder ``(r, half height)``; sphere ``(r,)``) [m], and its pose ``world_T_geom`` (4, 4)."""

    name: str
    kind: str
    size: tuple[float, ...]
    world_T_geom: np.ndarray


@dataclass
class MujocoCheck:
    """Result of one re-check.

    Attributes:
        n_states: States checked.
        n_colliding: States with at least one counted contact.
        first_t: Time of the first colliding state [s] (None if none).
        max_penetration: Deepest counted penetration [m] (0 if none).
        pairs: Distinct colliding (geom or body) name pairs, at most 10.
        max_vel_ratio, max_acc_ratio: Arm ``max |qd|/vlim`` and ``max |qdd|/alim`` from finite
            differences of the sampled positions.
        hand_max_vel_ratio: Hand ``max |qd|/vlim`` (finite differences).
    """

    n_states: int
    n_colliding: int
    first_t: float | None
    max_penetration: float
    pairs: list[tuple[str, str]] = field(default_factory=list)
    max_vel_ratio: float = float("nan")
    max_acc_ratio: float = float("nan")
    hand_max_vel_ratio: float = float("nan")

    @property
    def collision_free(self) -> bool:
        return self.n_colliding == 0


_KINDS = {"box": mujoco.mjtGeom.mjGEOM_BOX, "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
          "sphere": mujoco.mjtGeom.mjGEOM_SPHERE}


class MujocoChecker:
    """Re-checks trajectories of one robot combo against a scene of primitives.

    Args:
        robot: The robot combo.
        max_step: Largest joint motion between two checked states [rad].
        tol: Penetration depth ignored as numerical noise [m].
    """

    def __init__(self, robot: Robot, max_step: float = 0.003, tol: float = 1e-6):
        self.robot = robot
        self.max_step = float(max_step)
        self.tol = float(tol)
        self._base = robot.robot_spec()
        self.model: mujoco.MjModel | None = None
        self.set_scene([])

    def set_scene(self, primitives: list[Primitive], markers: list[tuple[np.ndarray, float, tuple]] | None = None) -> None:
        """Compile robot + primitives (``markers``: visual-only spheres ``(pos, radius, rgba)``)."""
        spec = self._base.spec.copy()
        names = set()
        for p in primitives:
            if p.kind not in _KINDS:
                raise ValueError(f"primitive '{p.name}': kind must be one of {tuple(_KINDS)}")
            g = spec.worldbody.add_geom()
            g.name = f"scene/{p.name}"
            names.add(g.name)
            g.type = _KINDS[p.kind]
            size = list(p.size) + [0.0] * (3 - len(p.size))
            g.size = size
            T = np.asarray(p.world_T_geom, dtype=np.float64)
            g.pos = T[:3, 3]
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, np.ascontiguousarray(T[:3, :3]).reshape(9))
            g.quat = quat
            g.rgba = {"table": [0.55, 0.45, 0.35, 1.0], "object": [0.95, 0.55, 0.1, 1.0]}.get(p.name, [0.35, 0.45, 0.6, 1.0])
        for pos in ((0.8, -0.6, 2.2), (-0.8, 1.6, 2.0)):  # for pictures only; lights do not collide
            light = spec.worldbody.add_light()
            light.pos = list(pos)
            light.dir = list(-np.asarray(pos) / np.linalg.norm(pos))
            light.castshadow = False
            light.diffuse = [0.7, 0.7, 0.7]
        for k, (pos, radius, rgba) in enumerate(markers or []):
            g = spec.worldbody.add_geom()
            g.name = f"marker/{k}"
            g.type = mujoco.mjtGeom.mjGEOM_SPHERE
            g.size = [radius, 0, 0]
            g.pos = np.asarray(pos, dtype=np.float64)
            g.rgba = list(rgba)
            g.contype = 0
            g.conaffinity = 0
        m = compile_spec(spec, self.robot.cfg.path)
        self.model = m
        self.data = mujoco.MjData(m)
        cfg = self.robot.cfg
        self._arm_adr = np.array([m.jnt_qposadr[m.joint(j).id] for j in cfg.arm.joints])
        self._hand_adr = np.array([m.jnt_qposadr[m.joint(j).id] for j in cfg.hand.joints])
        root = m.body(cfg.hand.root_body).id
        hand = np.zeros(m.nbody, dtype=bool)
        for b in range(m.nbody):
            a = b
            while a > 0:
                if a == root:
                    hand[b] = True
                    break
                a = int(m.body_parentid[a])
        self._hand_body = hand
        robot = np.zeros(m.nbody, dtype=bool)
        arm_base = m.body(cfg.arm.base_body).id
        for b in range(m.nbody):
            a = b
            while a > 0:
                if a == arm_base:
                    robot[b] = True
                    break
                a = int(m.body_parentid[a])
        self._robot_body = robot

    def states(self, arm: Trajectory, hand: Trajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(t (K,), arm q (K, 6), hand q (K, n))`` sampled so no joint moves more than ``max_step``."""
        t_end = max(arm.duration, hand.duration)
        grid = np.union1d(arm.t, hand.t)
        grid = grid[grid <= t_end + 1e-12]
        qa = _interp(grid, arm)
        qh = _interp(grid, hand)
        steps = np.maximum(np.abs(np.diff(qa, axis=0)).max(axis=1), np.abs(np.diff(qh, axis=0)).max(axis=1))
        n_sub = np.maximum(1, np.ceil(steps / self.max_step)).astype(int)
        ts = [grid[:1]]
        for k, n in enumerate(n_sub):
            ts.append(grid[k] + (grid[k + 1] - grid[k]) * np.arange(1, n + 1) / n)
        t = np.concatenate(ts)
        return t, _interp(t, arm), _interp(t, hand)

    def check(self, arm: Trajectory, hand: Trajectory) -> MujocoCheck:
        """Dense collision + limit re-check of an arm trajectory and the hand's trajectory (same clock)."""
        m, d = self.model, self.data
        t, qa, qh = self.states(arm, hand)
        n_coll, first_t, worst = 0, None, 0.0
        pairs: list[tuple[str, str]] = []
        for k in range(len(t)):
            d.qpos[:] = m.qpos0
            d.qpos[self._arm_adr] = qa[k]
            d.qpos[self._hand_adr] = qh[k]
            mujoco.mj_kinematics(m, d)
            mujoco.mj_collision(m, d)
            hit = False
            for c in d.contact[: d.ncon]:
                if c.dist >= -self.tol:
                    continue
                b1, b2 = int(m.geom_bodyid[c.geom1]), int(m.geom_bodyid[c.geom2])
                r1, r2 = self._robot_body[b1], self._robot_body[b2]
                if not (r1 or r2):
                    continue  # scene vs scene (e.g. an obstacle resting on the table)
                if self._hand_body[b1] and self._hand_body[b2]:
                    continue
                hit = True
                worst = max(worst, -float(c.dist))
                pair = (_geom_name(m, c.geom1), _geom_name(m, c.geom2))
                if pair not in pairs and len(pairs) < 10:
                    pairs.append(pair)
            if hit:
                n_coll += 1
                if first_t is None:
                    first_t = float(t[k])
        cfg = self.robot.cfg
        vr, ar = fd_limit_ratios(arm, cfg.arm.velocity_limits, cfg.arm.acceleration_limits)
        hv = _fd_vel_ratio(hand, cfg.hand.velocity_limits)
        return MujocoCheck(len(t), n_coll, first_t, worst, pairs, vr, ar, hv)


def _geom_name(m: mujoco.MjModel, g: int) -> str:
    name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g)
    if name:
        return name
    return f"{mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, int(m.geom_bodyid[g]))}/geom{g}"


def _interp(t: np.ndarray, traj: Trajectory) -> np.ndarray:
    if len(traj.t) == 1:
        return np.repeat(traj.q[:1], len(t), axis=0)
    return np.stack([np.interp(t, traj.t, traj.q[:, j]) for j in range(traj.q.shape[1])], 1)


def fd_limit_ratios(traj: Trajectory, vlim: np.ndarray, alim: np.ndarray) -> tuple[float, float]:
    """``(max |qd|/vlim, max |qdd|/alim)`` from central finite differences of the sampled positions
    (not from the planner's own derivatives)."""
    t, q = traj.t, traj.q
    if len(t) < 3:
        return 0.0, 0.0
    dt = np.diff(t)
    v = np.diff(q, axis=0) / dt[:, None]
    tm = 0.5 * (t[1:] + t[:-1])
    a = np.diff(v, axis=0) / np.diff(tm)[:, None]
    ok = np.diff(tm) > 1e-6
    return float(np.max(np.abs(v) / vlim)), float(np.max(np.abs(a[ok]) / alim)) if ok.any() else 0.0


def _fd_vel_ratio(traj: Trajectory, vlim: np.ndarray) -> float:
    if len(traj.t) < 2:
        return 0.0
    dt = np.diff(traj.t)
    ok = dt > 1e-9
    v = np.diff(traj.q, axis=0)[ok] / dt[ok, None]
    return float(np.max(np.abs(v) / vlim)) if len(v) else 0.0
