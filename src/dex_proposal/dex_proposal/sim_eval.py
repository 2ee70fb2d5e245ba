"""BODex's floating-hand grasp test in MuJoCo (ROS-free).

Protocol (BODex Sec. V-A/B, parameters in :class:`EvalConfig`):

1. The hand (``robot.hand_spec("mocap")``: root on a mocap body) and a free object (convex parts
   of its mesh, its mass, friction ``(0.6, 0.02)`` tangential/torsional on object and hand geoms,
   ``condim 4``, ``noslip_iterations 2``) with gravity off.
2. The hand starts at the pre-grasp (wrist on the mocap body, joints and servo targets at the
   pre-grasp). A hand-object penetration deeper than ``max_initial_penetration`` (1 cm) there fails.
3. The wrist and targets move linearly to the grasp, then the targets to the squeeze; settle.
4. From that state (restored for each direction, so each starts from the same reset), a force of
   the object's weight ``m g`` is applied at its centre of mass along +-x, +-y, +-z for ``hold``
   seconds; the grasp succeeds only if in all six the object stays within 5 cm and 15 deg of its
   initial pose.

Metrics at the grasp pose (static, ``mj_forward``): penetration depth (deepest hand-object
contact), self-penetration (deepest contact between hand geoms of non-adjacent bodies), contact
distance consistency (max - min over fingers of the signed distance of each fingertip to the object).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mujoco
import numpy as np

from dex_description.compose import Robot, compile_spec


@dataclass(frozen=True)
class EvalConfig:
    """Simulation test settings.

    Attributes:
        friction: (tangential, torsional) coefficients on the object and the hand.
        noslip_iterations: MuJoCo no-slip solver iterations (BODex: 2).
        approach, squeeze, settle, hold: Phase durations [s].
        max_translation: [m]; max_rotation: [deg] allowed object deviation.
        max_initial_penetration: [m] at the pre-grasp.
        gravity: [m/s^2] magnitude of the test acceleration (force = mass * gravity).
    """

    friction: tuple[float, float] = (0.6, 0.02)
    noslip_iterations: int = 2
    approach: float = 0.4
    squeeze: float = 0.4
    settle: float = 0.2
    hold: float = 1.0
    max_translation: float = 0.05
    max_rotation: float = 15.0
    max_initial_penetration: float = 0.01
    gravity: float = 9.8


@dataclass
class GraspOutcome:
    """Result of one grasp: ``success``; per direction success (6,); ``reason`` ('' on success);
    ``penetration``/``self_penetration`` [m] (>= 0) and ``contact_distances`` (m,) [m] at the grasp;
    ``max_translation`` [m] / ``max_rotation`` [deg] worst over directions."""

    success: bool
    directions: list[bool]
    reason: str
    penetration: float
    self_penetration: float
    contact_distances: list[float]
    max_translation: float
    max_rotation: float

    @property
    def cdc(self) -> float:
        """Contact distance consistency [m]: max - min fingertip distance."""
        return float(max(self.contact_distances) - min(self.contact_distances)) if self.contact_distances else float("nan")


def _mat_to_quat(rot: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(rot, dtype=np.float64).reshape(9))
    return q


@dataclass
class ObjectGeometry:
    """An object for the test: convex parts ``[(V (n, 3), F (k, 3)), ...]`` in the world frame [m]
    (the pose it had when the grasps were planned) and its mass [kg]."""

    parts: list[tuple[np.ndarray, np.ndarray]]
    mass: float
    name: str = "object"
    rgba: tuple[float, float, float, float] = (0.85, 0.55, 0.2, 1.0)


class FloatingHandEvaluator:
    """Builds the hand + object model once per object and evaluates grasps on it.

    Args:
        robot: The robot whose hand is tested.
        obj: The object.
        cfg: Settings.
    """

    def __init__(self, robot: Robot, obj: ObjectGeometry, cfg: EvalConfig | None = None):
        self.cfg = cfg or EvalConfig()
        self.robot = robot
        hand_cfg = robot.cfg.hand
        composed = robot.hand_spec("mocap")
        spec = composed.spec
        spec.option.gravity = [0.0, 0.0, 0.0]
        spec.option.noslip_iterations = self.cfg.noslip_iterations
        mu, tors = self.cfg.friction
        for g in spec.geoms:
            if g.contype or g.conaffinity:
                g.friction = [mu, tors, 0.0001]
        body = spec.worldbody.add_body()
        body.name = "object"
        body.add_freejoint().name = "object_root"
        vol = []
        for i, (v, f) in enumerate(obj.parts):
            mesh = spec.add_mesh()
            mesh.name = f"object_part{i}"
            mesh.uservert = np.asarray(v, dtype=np.float64).ravel().tolist()
            mesh.userface = np.asarray(f, dtype=np.int32).ravel().tolist()
            geom = body.add_geom()
            geom.type = mujoco.mjtGeom.mjGEOM_MESH
            geom.meshname = mesh.name
            geom.friction = [mu, tors, 0.0001]
            geom.condim = 4
            geom.rgba = list(obj.rgba)
            geom.density = 1000.0
            vol.append(i)
        self.model = compile_spec(spec, hand_cfg and robot.cfg.path)
        m = self.model
        # scale density so that the body mass equals obj.mass
        bid = m.body("object").id
        scale = obj.mass / max(float(m.body_mass[bid]), 1e-12)
        m.body_mass[bid] *= scale
        m.body_inertia[bid] *= scale
        self.mass = float(m.body_mass[bid])
        self.data = mujoco.MjData(m)
        self.object_body = bid
        self.object_qadr = m.jnt_qposadr[m.joint("object_root").id]
        self.object_dadr = m.jnt_dofadr[m.joint("object_root").id]
        self.mocap_id = m.body_mocapid[m.body(composed.mocap_body).id]
        self.object_geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] == bid]
        self.hand_geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] != bid and (m.geom_contype[g] or m.geom_conaffinity[g])]
        self.joint_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in hand_cfg.joints])
        act_ids = {m.actuator(i).name: i for i in range(m.nu)}
        self.act_ids = np.array([act_ids[a] for a in composed.hand_actuators])
        self.split = hand_cfg.actuation_matrix().T / np.maximum(hand_cfg.actuation_matrix().sum(1), 1.0)[None, :]
        distal = {cp.finger: m.body(cp.body).id for cp in hand_cfg.contact_points}
        self.finger_geoms = {f: [g for g in self.hand_geoms if m.geom_bodyid[g] == b] for f, b in distal.items()}
        parent = m.body_parentid
        excluded = {(int(m.exclude_signature[i]) >> 16, int(m.exclude_signature[i]) & 0xFFFF) for i in range(m.nexclude)}
        excluded |= {(b, a) for a, b in excluded}
        self.self_pairs = [
            (g1, g2) for i, g1 in enumerate(self.hand_geoms) for g2 in self.hand_geoms[i + 1:]
            if (b1 := int(m.geom_bodyid[g1])) != (b2 := int(m.geom_bodyid[g2]))
            and parent[b1] != b2 and parent[b2] != b1 and (b1, b2) not in excluded
        ]
        self.init_qpos = m.qpos0.copy()

    # ------------------------------------------------------------------------------------------
    def _set_pose(self, world_T_root: np.ndarray, u: np.ndarray, with_qpos: bool) -> None:
        m, d = self.model, self.data
        d.mocap_pos[self.mocap_id] = world_T_root[:3, 3]
        d.mocap_quat[self.mocap_id] = _mat_to_quat(world_T_root[:3, :3])
        if with_qpos:
            d.qpos[self.joint_qadr] = self.split @ u
        d.ctrl[self.act_ids] = u

    def _reset(self) -> None:
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[:] = self.init_qpos

    def _min_dist(self, ga: list[int], gb: list[int], distmax: float) -> float:
        m, d = self.model, self.data
        best = distmax
        fromto = np.zeros(6)
        for a in ga:
            for b in gb:
                dist = mujoco.mj_geomDistance(m, d, a, b, distmax, fromto)
                best = min(best, dist)
        return best

    def static_metrics(self, world_T_root: np.ndarray, u: np.ndarray) -> tuple[float, float, list[float]]:
        """``(penetration, self_penetration, fingertip distances)`` [m] at a pose (object at rest)."""
        self._reset()
        self._set_pose(world_T_root, u, True)
        mujoco.mj_forward(self.model, self.data)
        pen = -min(0.0, self._min_dist(self.hand_geoms, self.object_geoms, 0.05))
        spen = 0.0
        fromto = np.zeros(6)
        for a, b in self.self_pairs:
            dist = mujoco.mj_geomDistance(self.model, self.data, a, b, 0.0, fromto)
            spen = max(spen, -dist)
        dists = [self._min_dist(gs, self.object_geoms, 0.1) for gs in self.finger_geoms.values()]
        return pen, spen, dists

    def _object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.data.qpos[self.object_qadr:self.object_qadr + 7]
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, q[3:])
        return q[:3].copy(), rot.reshape(3, 3)

    def evaluate(self, pregrasp_T: np.ndarray, pregrasp_u: np.ndarray, grasp_T: np.ndarray, grasp_u: np.ndarray,
                 squeeze_u: np.ndarray) -> GraspOutcome:
        """Run the protocol for one grasp (poses in the world frame, actuated values [rad])."""
        cfg, m, d = self.cfg, self.model, self.data
        pen, spen, dists = self.static_metrics(grasp_T, grasp_u)
        self._reset()
        self._set_pose(pregrasp_T, pregrasp_u, True)
        mujoco.mj_forward(m, d)
        init_pen = -min(0.0, self._min_dist(self.hand_geoms, self.object_geoms, 0.05))
        p0, r0 = self._object_pose()
        if init_pen > cfg.max_initial_penetration:
            return GraspOutcome(False, [False] * 6, f"initial penetration {1000 * init_pen:.1f} mm", pen, spen, dists,
                                float("nan"), float("nan"))
        dt = m.opt.timestep
        n_app = max(1, int(round(cfg.approach / dt)))
        q_pre, q_g = _mat_to_quat(pregrasp_T[:3, :3]), _mat_to_quat(grasp_T[:3, :3])
        for k in range(n_app):
            s = (k + 1) / n_app
            d.mocap_pos[self.mocap_id] = (1 - s) * pregrasp_T[:3, 3] + s * grasp_T[:3, 3]
            quat = (1 - s) * q_pre + s * (q_g if np.dot(q_pre, q_g) >= 0 else -q_g)
            d.mocap_quat[self.mocap_id] = quat / np.linalg.norm(quat)
            d.ctrl[self.act_ids] = (1 - s) * pregrasp_u + s * grasp_u
            mujoco.mj_step(m, d)
        n_sq = max(1, int(round(cfg.squeeze / dt)))
        for k in range(n_sq):
            s = (k + 1) / n_sq
            d.ctrl[self.act_ids] = (1 - s) * grasp_u + s * squeeze_u
            mujoco.mj_step(m, d)
        for _ in range(int(round(cfg.settle / dt))):
            mujoco.mj_step(m, d)
        state = np.zeros(mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(m, d, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        force = self.mass * cfg.gravity
        results, worst_t, worst_r = [], 0.0, 0.0
        n_hold = int(round(cfg.hold / dt))
        for j in range(6):
            mujoco.mj_setState(m, d, state, mujoco.mjtState.mjSTATE_INTEGRATION)
            d.xfrc_applied[:] = 0
            d.xfrc_applied[self.object_body, j // 2] = force * (1 if j % 2 == 0 else -1)
            ok = True
            max_t = max_r = 0.0
            for k in range(n_hold):
                mujoco.mj_step(m, d)
                if k % 10 == 9 or k == n_hold - 1:
                    p, r = self._object_pose()
                    dtr = float(np.linalg.norm(p - p0))
                    cos = np.clip((np.trace(r0.T @ r) - 1) / 2, -1, 1)
                    drot = math.degrees(math.acos(cos))
                    max_t, max_r = max(max_t, dtr), max(max_r, drot)
                    if dtr > cfg.max_translation or drot > cfg.max_rotation or not np.isfinite(dtr):
                        ok = False
                        break
            d.xfrc_applied[:] = 0
            results.append(ok)
            worst_t, worst_r = max(worst_t, max_t), max(worst_r, max_r)
        success = all(results)
        names = ["+x", "-x", "+y", "-y", "+z", "-z"]
        reason = "" if success else "slipped under " + ",".join(n for n, ok in zip(names, results) if not ok)
        return GraspOutcome(success, results, reason, pen, spen, dists, worst_t, worst_r)


@dataclass
class EvalSummary:
    """Aggregates over grasps (see :func:`summarize`)."""

    n: int
    ssr: float
    penetration_mm: float
    self_penetration_mm: float
    cdc_mm: float
    extra: dict = field(default_factory=dict)


def summarize(outcomes: list[GraspOutcome]) -> dict:
    """SSR [%], mean penetration / self-penetration / CDC [mm] over grasps."""
    if not outcomes:
        return {"n": 0, "ssr": float("nan"), "penetration_mm": float("nan"), "self_penetration_mm": float("nan"),
                "cdc_mm": float("nan")}
    return {
        "n": len(outcomes),
        "ssr": 100.0 * float(np.mean([o.success for o in outcomes])),
        "penetration_mm": 1000.0 * float(np.mean([o.penetration for o in outcomes])),
        "self_penetration_mm": 1000.0 * float(np.mean([o.self_penetration for o in outcomes])),
        "cdc_mm": 1000.0 * float(np.nanmean([o.cdc for o in outcomes])),
    }
