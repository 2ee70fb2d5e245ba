"""Pinocchio + coal collision model of the arm with the hand attached at a fixed (pre-)shape.

Why the model is built in code from the compiled ``MjModel`` (and not parsed from MJCF/URDF):
the composed arm + hand ``MjSpec`` cannot be written back to XML here (``MjSpec.to_xml()``
segfaults in mujoco 4.0.0 on the attached specs), Pinocchio's URDF parser drops capsules, and the
compiled model is the single source of truth that our torch FK and the MuJoCo simulation already
use. So the kinematic chain (body offsets, joint axes and anchors) and every collision geom
(capsule, cylinder, box, sphere, ellipsoid, and MuJoCo's convex hull of each mesh) are read from
``robot.model`` and handed to Pinocchio (kinematics, placements) and coal (narrow phase).

What collides with what (mirrors MuJoCo's own filters, so the independent MuJoCo re-check and the
planner agree):

* arm geoms: exact MuJoCo primitives, attached to the joint that moves their body;
* hand: frozen at one joint configuration (the pre-grasp shape) while the arm moves, so it is a
  rigid attachment of the last arm joint. ``hand_geometry="hulls"`` (default) uses one convex hull
  per hand link (a superset of the link's geoms: conservative, ~4x fewer pairs than
  ``"geoms"``, which uses every hand geom as is);
* robot vs environment (table, boxes, cloud octree): every moving robot geom; geoms welded to the
  world (the arm base) are skipped, as MuJoCo skips same-weld pairs;
* robot vs robot: pairs of bodies that MuJoCo would collide (different weld bodies, not weld
  parent/child unless one is the world, not in the model's ``<exclude>`` list); hand vs hand is
  never checked (the hand's shape is the grasp proposer's business);
* every request has coal's cached GJK guess off (:func:`disable_cached_guess`; it gives false
  negatives after a collision-free query, and Pinocchio turns it on by default).

Margins: a pair is "in collision" when its distance is below its security margin, so a positive
margin keeps that much clearance. Several margin levels are kept side by side (``plan``,
``endpoint``, ``exact``), each with its own ``GeometryData``.

Shapes: joint vectors ``q`` (6,) [rad] in ``cfg.arm.joints`` order; poses (4, 4).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import coal
import mujoco
import numpy as np
import pinocchio as pin

from dex_description.compose import Robot
from dex_description.spheres import collision_geoms
from dex_planning.errors import InvalidInputError, PlanningError
from dex_planning.scene import PlanningScene

_HINGE = int(mujoco.mjtJoint.mjJNT_HINGE)


@dataclass(frozen=True)
class Margins:
    """Security margins of one check level [m]: ``env`` robot vs table/boxes/cloud, ``self`` robot vs
    robot, ``near_self`` robot vs robot when at most two joints separate the two geoms (e.g. UR
    wrist 1 vs the hand: such pairs pass within millimetres of each other by construction, a
    clearance margin there would forbid whole bands of wrist angles)."""

    env: float = 0.0
    self: float = 0.0
    near_self: float = 0.0


def disable_cached_guess(request) -> None:
    """Turn coal's cached GJK guess off on a collision request. Pinocchio's ``GeometryData`` sets
    the (deprecated but still honoured) ``enable_cached_gjk_guess = True``; the cached guess gives
    false negatives for axis-aligned boxes after a collision-free query."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        request.enable_cached_gjk_guess = False
    request.gjk_initial_guess = coal.GJKInitialGuess.DefaultGuess


def cached_guess_enabled(request) -> bool:
    """Whether a request would use coal's cached GJK guess (for tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(request.enable_cached_gjk_guess) or request.gjk_initial_guess == coal.GJKInitialGuess.CachedGuess


def _se3(T: np.ndarray) -> pin.SE3:
    return pin.SE3(np.ascontiguousarray(T[:3, :3]), np.ascontiguousarray(T[:3, 3]))


def _body_world(model: mujoco.MjModel, data: mujoco.MjData, b: int) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = data.xmat[b].reshape(3, 3)
    T[:3, 3] = data.xpos[b]
    return T


def _geom_points(geom, n_circle: int = 24) -> np.ndarray:
    """Points (P, 3) in the BODY frame whose convex hull contains the geom (curved parts sampled densely)."""
    t = geom.type_name
    s = geom.size
    if t == "mesh":
        return geom.vertices
    if t == "box":
        corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float) * s
        local = corners
    else:
        # A polyhedron circumscribing the round shape: scale the samples by 1/cos(pi/n) so that the
        # hull contains the true surface (the hull of inscribed samples would cut chords).
        k = n_circle
        grow = 1.0 / np.cos(np.pi / k)
        ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
        if t == "cylinder":
            ring = np.stack([np.cos(ang), np.sin(ang)], 1) * s[0] * grow
            local = np.concatenate([np.c_[ring, np.full(k, z)] for z in (-s[1], s[1])])
        else:  # sphere, capsule, ellipsoid: latitude rings
            lat = np.linspace(-np.pi / 2, np.pi / 2, k // 2 + 1)
            pts = []
            for la in lat:
                for lo in ang:
                    pts.append([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
            unit = np.array(pts) / np.cos(2 * np.pi / k)  # facets of a lat-long grid: circumscribe conservatively
            if t == "sphere":
                local = unit * s[0]
            elif t == "ellipsoid":
                local = unit * s[:3]
            else:  # capsule: two hemispheres
                top = unit[unit[:, 2] >= 0] * s[0] + [0, 0, s[1]]
                bot = unit[unit[:, 2] <= 0] * s[0] - [0, 0, s[1]]
                local = np.concatenate([top, bot])
    return geom.pos + local @ geom.rot.T


def _coal_shape(geom):
    """The coal shape of a MuJoCo collision geom, in the GEOM frame (meshes: body frame)."""
    t, s = geom.type_name, geom.size
    if t == "sphere":
        return coal.Sphere(float(s[0]))
    if t == "capsule":
        return coal.Capsule(float(s[0]), float(2 * s[1]))
    if t == "cylinder":
        return coal.Cylinder(float(s[0]), float(2 * s[1]))
    if t == "box":
        return coal.Box(float(2 * s[0]), float(2 * s[1]), float(2 * s[2]))
    if t == "ellipsoid":
        return coal.Ellipsoid(float(s[0]), float(s[1]), float(s[2]))
    return _convex(geom.vertices)


def _convex(points: np.ndarray):
    pts = coal.StdVec_Vec3s()
    for p in np.asarray(points, dtype=np.float64):
        pts.append(np.ascontiguousarray(p))
    return coal.Convex.convexHull(pts, False, "")


@dataclass
class _GeomEntry:
    name: str
    body: int  # MuJoCo body id
    joint: int  # Pinocchio joint index (0 = universe)
    kind: str  # "arm", "hand", "static"


class ArmCollisionModel:
    """Arm (+ rigidly attached hand) collision checking against a :class:`PlanningScene`.

    Args:
        robot: The robot combo (its compiled ``model`` is read).
        hand_geometry: ``"hulls"`` (one convex hull per hand link) or ``"geoms"`` (every hand geom).
        levels: Margin levels, e.g. ``{"plan": Margins(0.01, 0.005), "exact": Margins()}``.

    After construction call :meth:`set_hand` (default: the YAML pre-shape is set) and
    :meth:`set_scene` (default: no obstacles).
    """

    def __init__(self, robot: Robot, hand_geometry: str = "hulls", levels: dict[str, Margins] | None = None):
        if hand_geometry not in ("hulls", "geoms"):
            raise PlanningError(f"hand_geometry must be 'hulls' or 'geoms', got {hand_geometry!r}")
        self.robot = robot
        self.cfg = robot.cfg
        self.hand_geometry = hand_geometry
        self.levels = dict(levels or {"exact": Margins()})
        m = robot.model
        self.mj = m
        self._mjd = mujoco.MjData(m)
        self.joint_names = tuple(self.cfg.arm.joints)
        self._arm_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.joint_names])
        self._hand_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.cfg.hand.joints])
        self.lower = np.array([m.jnt_range[m.joint(j).id][0] for j in self.joint_names])
        self.upper = np.array([m.jnt_range[m.joint(j).id][1] for j in self.joint_names])
        if np.any(m.qpos0[self._arm_qadr] != 0.0):
            raise PlanningError("arm joints with a non-zero reference position (qpos0) are not supported")
        self._build_kinematics()
        self._build_robot_geometry()
        self.hand_q = np.asarray(self.cfg.hand.named_poses["pre_shape"], dtype=np.float64)
        self.scene = PlanningScene()
        self.set_hand(self.hand_q)
        self.set_scene(self.scene)

    # ------------------------------------------------------------------ kinematics

    def _build_kinematics(self) -> None:
        m = self.mj
        d = self._mjd
        d.qpos[:] = m.qpos0
        mujoco.mj_kinematics(m, d)
        model = pin.Model()
        model.name = f"{self.cfg.name}_arm"
        self._joint_body = []  # MuJoCo body of each Pinocchio joint (1..6)
        self._joint_world0 = [np.eye(4)]  # world_T_jointframe at q = 0, per Pinocchio joint
        parent = 0
        for name in self.joint_names:
            j = m.joint(name).id
            if int(m.jnt_type[j]) != _HINGE:
                raise PlanningError(f"arm joint '{name}': only hinge joints are supported")
            b = int(m.jnt_bodyid[j])
            world_T_frame = _body_world(m, d, b)
            world_T_frame[:3, 3] = world_T_frame[:3, :3] @ m.jnt_pos[j] + world_T_frame[:3, 3]
            placement = np.linalg.inv(self._joint_world0[parent]) @ world_T_frame
            axis = np.asarray(m.jnt_axis[j], dtype=np.float64)
            axis = axis / np.linalg.norm(axis)
            jmodel = pin.JointModelRevoluteUnaligned(axis)
            idx = model.addJoint(parent, jmodel, _se3(placement), name)
            lo, hi = m.jnt_range[j]
            model.lowerPositionLimit[idx - 1] = lo
            model.upperPositionLimit[idx - 1] = hi
            self._joint_body.append(b)
            self._joint_world0.append(world_T_frame)
            parent = idx
        # Bodies -> the Pinocchio joint that moves them (nearest arm-joint ancestor), 0 for static ones.
        joint_of_body = {}
        for b in range(m.nbody):
            a = b
            while a > 0 and a not in self._joint_body:
                a = int(m.body_parentid[a])
            joint_of_body[b] = 0 if a == 0 else self._joint_body.index(a) + 1
        self._joint_of_body = joint_of_body
        # Frames: the flange (tool0) and the hand root.
        site = m.site(self.cfg.arm.flange_site).id
        world_T_site = np.eye(4)
        world_T_site[:3, :3] = d.site_xmat[site].reshape(3, 3)
        world_T_site[:3, 3] = d.site_xpos[site]
        last = len(self.joint_names)
        self._flange_in_joint = np.linalg.inv(self._joint_world0[last]) @ world_T_site
        self.flange_T_root = self.cfg.flange_T_root.matrix()
        self.model = model
        self.data = model.createData()
        self.hand_root_body = m.body(self.cfg.hand.root_body).id
        hand_bodies = set()
        for b in range(m.nbody):
            a = b
            while a > 0:
                if a == self.hand_root_body:
                    hand_bodies.add(b)
                    break
                a = int(m.body_parentid[a])
        self.hand_bodies = hand_bodies

    def flange_pose(self, q: np.ndarray) -> np.ndarray:
        """``world_T_flange`` (4, 4) for arm joints ``q`` (6,) [rad]."""
        pin.forwardKinematics(self.model, self.data, np.asarray(q, dtype=np.float64))
        oMi = self.data.oMi[len(self.joint_names)]
        T = np.eye(4)
        T[:3, :3] = oMi.rotation
        T[:3, 3] = oMi.translation
        return T @ self._flange_in_joint

    def flange_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(world_T_flange (4, 4), J (6, 6))`` with ``J`` mapping qdot to the flange twist
        ``(v, omega)`` in the world frame (``LOCAL_WORLD_ALIGNED``, v of the flange origin)."""
        q = np.asarray(q, dtype=np.float64)
        last = len(self.joint_names)
        pin.computeJointJacobians(self.model, self.data, q)
        J = pin.getJointJacobian(self.model, self.data, last, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED)
        oMi = self.data.oMi[last]
        T = np.eye(4)
        T[:3, :3] = oMi.rotation
        T[:3, 3] = oMi.translation
        world_T_flange = T @ self._flange_in_joint
        # shift the linear part from the joint origin to the flange origin: v_f = v_j + w x r
        r = world_T_flange[:3, 3] - T[:3, 3]
        Jf = J.copy()
        Jf[:3] = J[:3] - np.cross(r[None, :], J[3:].T).T
        return world_T_flange, Jf

    # ------------------------------------------------------------------ geometry

    def _build_robot_geometry(self) -> None:
        m = self.mj
        self._robot_objects: list[tuple[_GeomEntry, object, np.ndarray]] = []  # entry, shape, body_T_shape
        for b in range(1, m.nbody):
            name = m.body(b).name
            geoms = collision_geoms(m, name)
            if not geoms:
                continue
            kind = "hand" if b in self.hand_bodies else ("static" if self._joint_of_body[b] == 0 else "arm")
            if kind == "hand" and self.hand_geometry == "hulls":
                pts = np.concatenate([_geom_points(g) for g in geoms])
                self._robot_objects.append((_GeomEntry(f"{name}/hull", b, len(self.joint_names), kind), _convex(pts), np.eye(4)))
                continue
            for g in geoms:
                local = np.eye(4)
                if g.type_name != "mesh":
                    local[:3, :3] = g.rot
                    local[:3, 3] = g.pos
                joint = len(self.joint_names) if kind == "hand" else self._joint_of_body[b]
                self._robot_objects.append((_GeomEntry(g.name, b, joint, kind), _coal_shape(g), local))
        # Which robot body pairs MuJoCo would collide.
        weld = m.body_weldid
        parent = m.body_parentid
        excluded = set()
        for i in range(m.nexclude):
            sig = int(m.exclude_signature[i])
            excluded.add((sig >> 16, sig & 0xFFFF))
            excluded.add((sig & 0xFFFF, sig >> 16))

        def collides(b1: int, b2: int) -> bool:
            if b1 in self.hand_bodies and b2 in self.hand_bodies:
                return False
            w1, w2 = int(weld[b1]), int(weld[b2])
            if w1 == w2 or (b1, b2) in excluded:
                return False
            wp1, wp2 = int(weld[parent[w1]]), int(weld[parent[w2]])
            if w1 and w2 and (w1 == wp2 or w2 == wp1):
                return False
            return True

        self._self_pairs = []
        objs = self._robot_objects
        for i in range(len(objs)):
            for k in range(i + 1, len(objs)):
                ei, ek = objs[i][0], objs[k][0]
                if ei.kind == "static" and ek.kind == "static":
                    continue
                if ei.joint == ek.joint:  # rigidly connected in the planning model (incl. the frozen hand)
                    continue
                if collides(ei.body, ek.body):
                    self._self_pairs.append((i, k))

    def set_hand(self, q_hand: np.ndarray) -> None:
        """Freeze the hand at joint positions ``q_hand`` (n_hand,) [rad] (``cfg.hand.joints`` order)."""
        q_hand = np.asarray(q_hand, dtype=np.float64)
        if q_hand.shape != (len(self.cfg.hand.joints),) or not np.all(np.isfinite(q_hand)):
            raise InvalidInputError(f"hand joints must be {len(self.cfg.hand.joints)} finite values, got shape {q_hand.shape}")
        m, d = self.mj, self._mjd
        d.qpos[:] = m.qpos0
        d.qpos[self._hand_qadr] = q_hand
        mujoco.mj_kinematics(m, d)
        last_inv = np.linalg.inv(self._joint_world0[len(self.joint_names)])
        self.hand_q = q_hand.copy()
        self._hand_placements = {}
        for idx, (entry, _shape, local) in enumerate(self._robot_objects):
            if entry.kind == "hand":
                self._hand_placements[idx] = last_inv @ _body_world(m, d, entry.body) @ local
        if hasattr(self, "geom_model"):
            for idx, T in self._hand_placements.items():
                self.geom_model.geometryObjects[idx].placement = _se3(T)

    def set_scene(self, scene: PlanningScene, levels: dict[str, Margins] | None = None) -> None:
        """Rebuild the environment part (table, boxes, cloud octree) and every margin level."""
        if levels is not None:
            self.levels = dict(levels)
        self.scene = scene
        gm = pin.GeometryModel()
        m, d = self.mj, self._mjd
        d.qpos[:] = m.qpos0
        mujoco.mj_kinematics(m, d)
        names = []
        for idx, (entry, shape, local) in enumerate(self._robot_objects):
            if entry.kind == "hand":
                placement = self._hand_placements[idx]
            else:
                placement = np.linalg.inv(self._joint_world0[entry.joint]) @ _body_world(m, d, entry.body) @ local
            gm.addGeometryObject(pin.GeometryObject(entry.name, entry.joint, _se3(placement), shape))
            names.append(entry.name)
        n_robot = len(names)
        env = []
        for box in scene.boxes:
            env.append(gm.addGeometryObject(pin.GeometryObject(f"env/{box.name}", 0, _se3(box.world_T_box),
                                                               coal.Box(*[float(x) for x in box.size]))))
            names.append(f"env/{box.name}")
        if scene.cloud is not None:
            tree = coal.makeOctree(np.ascontiguousarray(scene.cloud), float(scene.cloud_resolution))
            env.append(gm.addGeometryObject(pin.GeometryObject("env/cloud", 0, pin.SE3.Identity(), tree)))
            names.append("env/cloud")
        # Pair order: hand vs environment first (most likely to collide), then arm vs env, then self.
        env_pairs = []
        for kind in ("hand", "arm"):
            for i in range(n_robot):
                if self._robot_objects[i][0].kind == kind:
                    env_pairs.extend((i, e) for e in env)
        self._n_env_pairs = len(env_pairs)
        near = []
        for i, k in env_pairs + self._self_pairs:
            gm.addCollisionPair(pin.CollisionPair(i, k))
            near.append(abs(self._robot_objects[i][0].joint - self._robot_objects[k][0].joint) <= 2
                        if k < n_robot else False)
        self.geom_model = gm
        self.geom_names = names
        self.n_robot_geoms = n_robot
        self._gdata = {}
        for level, margins in self.levels.items():
            gd = pin.GeometryData(gm)
            for p in range(len(gm.collisionPairs)):
                req = gd.collisionRequests[p]
                disable_cached_guess(req)
                if p < self._n_env_pairs:
                    req.security_margin = float(margins.env)
                else:
                    req.security_margin = float(margins.near_self if near[p] else margins.self)
                req.num_max_contacts = 1
                req.enable_contact = False
            self._gdata[level] = gd
        # Broad phase (coal's dynamic AABB tree, AABBs inflated by each pair's security margin):
        # 3-4x faster than testing every pair, identical answers (checked in the tests).
        self._broad = {level: pin.BroadPhaseManager_DynamicAABBTreeCollisionManager(self.model, gm, gd)
                       for level, gd in self._gdata.items()}

    @property
    def n_pairs(self) -> int:
        return len(self.geom_model.collisionPairs)

    # ------------------------------------------------------------------ queries

    def in_collision(self, q: np.ndarray, level: str = "exact") -> bool:
        """True if any checked pair is closer than its margin at arm joints ``q`` (6,) [rad]."""
        return bool(pin.computeCollisions(self.model, self.data, self._broad[level], np.asarray(q, dtype=np.float64), True))

    def in_collision_narrow(self, q: np.ndarray, level: str = "exact") -> bool:
        """:meth:`in_collision` testing every pair without the broad phase (for cross-checks)."""
        return bool(pin.computeCollisions(self.model, self.data, self.geom_model, self._gdata[level],
                                          np.asarray(q, dtype=np.float64), True))

    def colliding_pairs(self, q: np.ndarray, level: str = "exact") -> list[tuple[str, str]]:
        """Names of every pair closer than its margin at ``q`` (for reports and tests)."""
        gd = self._gdata[level]
        pin.computeCollisions(self.model, self.data, self.geom_model, gd, np.asarray(q, dtype=np.float64), False)
        out = []
        for p, pair in enumerate(self.geom_model.collisionPairs):
            if gd.collisionResults[p].isCollision():
                out.append((self.geom_names[pair.first], self.geom_names[pair.second]))
        return out

    def first_collision(self, qs: np.ndarray, level: str = "exact") -> int:
        """Index of the first configuration of ``qs`` (K, 6) in collision, or -1."""
        mgr = self._broad[level]
        for i, q in enumerate(np.asarray(qs, dtype=np.float64)):
            if pin.computeCollisions(self.model, self.data, mgr, q, True):
                return i
        return -1
