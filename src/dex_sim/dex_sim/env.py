"""ROS-free simulation environment: robot + table + camera + objects, driver-like commands.

``SimEnv`` is what the sim node, the policy and the benchmarks use::

    env = SimEnv(default_config(), robot="ur5e_leap", num_objects=3)
    obs = env.reset(seed=0)
    env.command_arm(JointTrajectoryCommand(names, [TrajectoryPoint(q, 2.0)]))
    env.step_time(2.5)
    frame = env.render()                       # RGB (H, W, 3) uint8 + depth (H, W) float32 [m]
    info = env.camera_info()                   # K, size, frame id, world_T_optical
    state = env.joint_state()                  # driver names and conventions (what /joint_states carries)

Frames: world = the arm's ``base_link`` (``world_T_base`` of the robot YAML; identity for both
shipped combos); table top at ``z = scene.table.top_z`` (0); camera optical frame
``camera_color_optical_frame`` (z forward, x right, y down); depth is registered to colour.

Ground truth (:meth:`SimEnv.object_poses`, :meth:`SimEnv.render_segmentation`) is for evaluation
and perception tests only; no decision-making code may use it.

Objects are free bodies: collision = the object's convex parts (:func:`dex_sim.objects.convex_parts`,
density set so the total mass is ``mass_kg``), visual = the mesh (no collision). On reset they are
dropped at random x/y in the workspace region, random yaw and random orientation, and let settle
(seeded); placements whose objects leave the table, keep moving or touch the robot are redrawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import mujoco
import numpy as np

from dex_description.compose import PhysicsOptions, Robot, compile_spec, default_physics, load_robot
from dex_sim import scene as scene_mod
from dex_sim.commands import (
    Channel,
    CommandRejected,
    JointStateCommand,
    JointTrajectoryCommand,
    Plan,
    SimError,
    Tolerances,
    TrajectoryPoint,
    validate_joint_state,
    validate_trajectory,
)
from dex_sim.objects import ObjectSet, ObjectSpec, convex_parts, load_mesh, load_object_set
from dex_sim.render import RGBD, RGBDRenderer

__all__ = [
    "EnvConfig", "SimEnv", "default_config", "CameraInfo", "JointStateSample", "Segmentation", "Observation",
    "CommandRejected", "SimError", "ResetError", "JointTrajectoryCommand", "JointStateCommand", "TrajectoryPoint",
]

OPTICAL_FRAME = "camera_color_optical_frame"
OBJECT_PREFIX = "obj/"
PALETTE = np.array([[0.85, 0.25, 0.2], [0.2, 0.6, 0.85], [0.95, 0.75, 0.15], [0.3, 0.7, 0.3], [0.6, 0.35, 0.75],
                    [0.95, 0.5, 0.2], [0.2, 0.75, 0.7], [0.85, 0.45, 0.6], [0.5, 0.5, 0.55], [0.6, 0.45, 0.3]])


class ResetError(SimError):
    """The scene could not be set up (no room for the objects, unknown object, ...)."""


@dataclass(frozen=True)
class EnvConfig:
    """Everything about a simulation episode. ``default_config()`` + ``dataclasses.replace`` or
    keyword overrides of :class:`SimEnv`.

    Attributes:
        robot: Robot combo name or YAML path.
        physics: MuJoCo options (time step [s] = physics rate).
        scene: Table, camera, floor (:mod:`dex_sim.scene`).
        object_set: Object set name or directory (:func:`dex_sim.objects.load_object_set`).
        num_objects: Objects drawn at random per reset (when no names are given).
        workspace_xy: ((x_min, x_max), (y_min, y_max)) [m] region of the table where objects are dropped.
        object_spacing: [m] clearance between the objects' footprints at the drop.
        drop_height: [m] gap between an object's lowest point and the table at the drop.
        settle_time_s: [s] simulated time objects get to fall and settle.
        settle_speed: [m/s] objects must be slower than this after settling.
        max_placement_tries: Placements drawn per reset before giving up.
        control_decimation: Physics steps per update of the servo set-points (trajectory sampling).
        tolerances: Command acceptance tolerances.
        condim: Contact dimensionality of object geoms (4: sliding + torsional friction).
        render_width, render_height: Override the camera's image size (0: the camera's).
    """

    robot: str = "ur5e_leap"
    physics: PhysicsOptions = field(default_factory=default_physics)
    scene: scene_mod.SceneConfig = field(default_factory=scene_mod.default_config)
    object_set: str = "builtin"
    num_objects: int = 1
    workspace_xy: tuple[tuple[float, float], tuple[float, float]] = ((-0.35, 0.25), (0.35, 0.75))
    object_spacing: float = 0.02
    drop_height: float = 0.005
    settle_time_s: float = 1.5
    settle_speed: float = 0.02
    max_placement_tries: int = 20
    control_decimation: int = 1
    tolerances: Tolerances = field(default_factory=Tolerances)
    condim: int = 4


def default_config() -> EnvConfig:
    """The default episode: UR5e + LEAP, one built-in object, default scene and physics."""
    return EnvConfig()


@dataclass(frozen=True)
class CameraInfo:
    """Pinhole camera model (what ``sensor_msgs/CameraInfo`` + the calibration carry).

    Attributes:
        width, height: [px].
        K: (3, 3) intrinsics [px]; distortion is zero (plumb bob, D = 0).
        frame_id: Optical frame (z forward, x right, y down).
        world_T_optical: (4, 4) pose of the optical frame in the world (= robot base) frame.
        base_frame: Name of the world frame (the arm's base_link).
    """

    width: int
    height: int
    K: np.ndarray
    frame_id: str
    world_T_optical: np.ndarray
    base_frame: str = "base_link"


@dataclass(frozen=True)
class JointStateSample:
    """Joint state in a driver's terms: ``names`` (n,), ``position`` [rad], ``velocity`` [rad/s],
    ``effort`` [N m] (n,)."""

    names: list[str]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


@dataclass(frozen=True)
class Segmentation:
    """Per-pixel labels: ``ids`` (H, W) int32; ``labels`` id -> name (0 background, 1 table,
    2 robot, 3 + k the k-th object)."""

    ids: np.ndarray
    labels: dict[int, str]


@dataclass(frozen=True)
class Observation:
    """What :meth:`SimEnv.reset` returns: time [s], joint state (driver terms), placed object names."""

    time: float
    joint_state: JointStateSample
    object_names: list[str]


SEG_BACKGROUND, SEG_TABLE, SEG_ROBOT, SEG_FIRST_OBJECT = 0, 1, 2, 3


def _rot_to_quat(rot: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(rot, dtype=np.float64).reshape(9))
    return q


def _quat_to_rot(q: np.ndarray) -> np.ndarray:
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.asarray(q, dtype=np.float64))
    return m.reshape(3, 3)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random unit quaternion (w, x, y, z) (Shoemake)."""
    u1, u2, u3 = rng.random(3)
    q = np.array([math.sqrt(u1) * math.cos(2 * math.pi * u3), math.sqrt(1 - u1) * math.sin(2 * math.pi * u2),
                  math.sqrt(1 - u1) * math.cos(2 * math.pi * u2), math.sqrt(u1) * math.sin(2 * math.pi * u3)])
    return q / np.linalg.norm(q)


@dataclass
class _Object:
    """A placed object instance: spec + its geometry + its ids in the compiled model."""

    instance: str
    spec: ObjectSpec
    vertices: np.ndarray
    faces: np.ndarray
    parts: list[np.ndarray]
    rgba: np.ndarray
    body_id: int = -1
    qpos_adr: int = -1
    dof_adr: int = -1
    geom_ids: tuple[int, ...] = ()


class SimEnv:
    """The simulated hardware: reset / step / render, driver-like commands, ground truth.

    Args:
        config: :class:`EnvConfig` (default :func:`default_config`).
        **overrides: Fields of the config to replace, e.g. ``robot="ur10e_shadow"``.

    Raises:
        SimError, dex_description errors (robot), dex_sim.objects errors (object set).
    """

    def __init__(self, config: EnvConfig | None = None, **overrides) -> None:
        cfg = config or default_config()
        if overrides:
            cfg = replace(cfg, **overrides)
        self.cfg = cfg
        self.robot: Robot = load_robot(cfg.robot, cfg.physics, check=False)
        rcfg = self.robot.cfg
        base = scene_mod.build_scene(self.robot, cfg.scene)
        self._base_spec = base.spec
        self._arm_acts = list(base.arm_actuators)
        self._hand_acts = list(base.hand_actuators)
        self.object_set: ObjectSet = load_object_set(cfg.object_set)
        self._objects: list[_Object] = []
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self._renderer: RGBDRenderer | None = None
        self._arm_plan: Plan | None = None
        self._hand_plan: Plan | None = None
        self._hand_target: np.ndarray | None = None
        self._rng = np.random.default_rng(0)
        self.last_seed: int | None = None
        # Driver views (fixed per robot).
        hand = rcfg.hand
        self._A = hand.actuation_matrix()  # (n_act, n_joints)
        hv = np.asarray(hand.velocity_limits, dtype=np.float64)
        self._hand_act_vel = self._A @ hv
        self.arm_channel: Channel | None = None
        self.hand_channel: Channel | None = None
        self._compile([])

    # ------------------------------------------------------------------ model building

    def _make_object(self, spec: ObjectSpec, instance: str) -> _Object:
        v, f = load_mesh(spec)
        parts = convex_parts(spec)
        k = sum(ord(c) for c in spec.name) % len(PALETTE)
        return _Object(instance, spec, v, f, parts, np.append(PALETTE[k], 1.0))

    def _add_object(self, spec: mujoco.MjSpec, obj: _Object) -> None:
        from scipy.spatial import ConvexHull

        body = spec.worldbody.add_body()
        body.name = OBJECT_PREFIX + obj.instance
        body.add_freejoint().name = OBJECT_PREFIX + obj.instance
        vols = [ConvexHull(p).volume for p in obj.parts]
        density = obj.spec.mass_kg / max(sum(vols), 1e-12)
        for k, p in enumerate(obj.parts):
            mesh = spec.add_mesh()
            mesh.name = f"{OBJECT_PREFIX}{obj.instance}/part_{k}"
            mesh.uservert = p.reshape(-1).tolist()
            g = body.add_geom()
            g.name = f"{OBJECT_PREFIX}{obj.instance}/collision_{k}"
            g.type = mujoco.mjtGeom.mjGEOM_MESH
            g.meshname = mesh.name
            g.density = density
            g.friction = list(obj.spec.friction)
            g.condim = self.cfg.condim
            g.group = 3
            g.rgba = list(obj.rgba)
        mesh = spec.add_mesh()
        mesh.name = f"{OBJECT_PREFIX}{obj.instance}/visual"
        mesh.uservert = obj.vertices.reshape(-1).tolist()
        mesh.userface = obj.faces.reshape(-1).tolist()
        g = body.add_geom()
        g.name = f"{OBJECT_PREFIX}{obj.instance}/visual"
        g.type = mujoco.mjtGeom.mjGEOM_MESH
        g.meshname = mesh.name
        g.contype = 0
        g.conaffinity = 0
        g.density = 0.0
        g.mass = 0.0
        g.group = 2
        g.rgba = list(obj.rgba)

    def _compile(self, objects: list[_Object]) -> None:
        spec = self._base_spec.copy()
        for obj in objects:
            self._add_object(spec, obj)
        spec.keys  # noqa: B018 (keyframes keep the robot's qpos layout; objects follow)
        for key in list(spec.keys):
            spec.delete(key)  # object freejoints change nq; we set states directly
        model = compile_spec(spec, self.robot.cfg.path)
        self.model = model
        self.data = mujoco.MjData(model)
        self._objects = objects
        for obj in objects:
            b = model.body(OBJECT_PREFIX + obj.instance)
            j = model.joint(OBJECT_PREFIX + obj.instance)
            obj.body_id, obj.qpos_adr, obj.dof_adr = b.id, int(model.jnt_qposadr[j.id]), int(model.jnt_dofadr[j.id])
            obj.geom_ids = tuple(int(g) for g in range(model.ngeom) if model.geom_bodyid[g] == b.id)
        rcfg = self.robot.cfg
        self._arm_q = np.array([model.jnt_qposadr[model.joint(n).id] for n in rcfg.arm.joints])
        self._arm_v = np.array([model.jnt_dofadr[model.joint(n).id] for n in rcfg.arm.joints])
        self._hand_q = np.array([model.jnt_qposadr[model.joint(n).id] for n in rcfg.hand.joints])
        self._hand_v = np.array([model.jnt_dofadr[model.joint(n).id] for n in rcfg.hand.joints])
        self._arm_ctrl = np.array([model.actuator(a).id for a in self._arm_acts])
        self._arm_kv_ctrl = np.array([model.actuator(f"{a}/kv").id for a in self._arm_acts])  # set-point velocity
        self._hand_ctrl = np.array([model.actuator(a).id for a in self._hand_acts])
        self._arm_range = model.jnt_range[[model.joint(n).id for n in rcfg.arm.joints]].copy()
        self._hand_act_range = model.actuator_ctrlrange[self._hand_ctrl].copy()
        # Arm velocity feed-forward: the arm's kv actuators get the set-point velocity, so the servo
        # is kp (q_sp - q) + kv (v_sp - qdot), i.e. trajectory tracking without the PD's lag (the UR
        # controller tracks closely). Not for the hands: their light links with saturating servos
        # go unstable on set-point velocity steps, and their lag is small (kv/kp < 0.04 s).
        self._robot_bodies = set()
        root_bodies = [model.body(rcfg.arm.base_body).id]
        for b in range(model.nbody):
            p = b
            while p != 0 and p not in root_bodies:
                p = int(model.body_parentid[p])
            if p in root_bodies:
                self._robot_bodies.add(b)
        self._table_geom = model.geom("table").id
        self._camera_id = model.camera(self.cfg.scene.camera.name).id
        if self.arm_channel is None:
            self._make_channels()
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._home()

    def _make_channels(self) -> None:
        rcfg = self.robot.cfg
        arm = rcfg.arm
        self.arm_channel = Channel(
            "arm", [d.name for d in arm.driver.joints], np.array([d.scale for d in arm.driver.joints]),
            np.array([d.offset for d in arm.driver.joints]), self._arm_range[:, 0].copy(), self._arm_range[:, 1].copy(),
            np.asarray(arm.velocity_limits, dtype=np.float64).copy(), "trajectory")
        hand = rcfg.hand
        drv = hand.driver
        kind = "joint_state" if drv.command_type.endswith("JointState") else "trajectory"
        lo, hi = self._hand_act_range[:, 0], self._hand_act_range[:, 1]
        if drv.joints:  # explicit driver vector: each entry maps one model joint (must be an actuator of its own)
            act_index = {a.joints[0]: i for i, a in enumerate(hand.actuated) if len(a.joints) == 1}
            idx = []
            for d in drv.joints:
                if d.joint not in act_index:
                    raise SimError(f"{rcfg.path}: hand.driver.joints: '{d.joint}' is not a single-joint actuator")
                idx.append(act_index[d.joint])
            if sorted(idx) != list(range(len(hand.actuated))):
                raise SimError(f"{rcfg.path}: hand.driver.joints must map every actuator exactly once")
            self._hand_cmd_to_act = np.array(idx)
            names = [d.name for d in drv.joints]
            scale = np.array([d.scale for d in drv.joints])
            offset = np.array([d.offset for d in drv.joints])
        else:
            self._hand_cmd_to_act = np.arange(len(hand.actuated))
            names = list(hand.actuated_names) if drv.command_space == "actuated" else list(hand.joints)
            if len(names) != len(hand.actuated):
                raise SimError(f"{rcfg.path}: hand.driver: command_space 'joints' needs one actuator per joint")
            scale = np.ones(len(names))
            offset = np.zeros(len(names))
        i = self._hand_cmd_to_act
        self.hand_channel = Channel("hand", names, scale, offset, lo[i].copy(), hi[i].copy(),
                                    self._hand_act_vel[i].copy(), kind)

    def _home(self) -> None:
        """Robot at home (arm home, hand open), servos holding it, objects untouched, plans cleared."""
        m, d, rcfg = self.model, self.data, self.robot.cfg
        d.qpos[self._arm_q] = rcfg.arm.named_poses["home"]
        d.qpos[self._hand_q] = rcfg.hand.named_poses["open"]
        d.qvel[self._arm_v] = 0
        d.qvel[self._hand_v] = 0
        d.ctrl[self._arm_ctrl] = rcfg.arm.named_poses["home"]
        d.ctrl[self._arm_kv_ctrl] = 0.0
        d.ctrl[self._hand_ctrl] = rcfg.hand.actuated_from_joints(rcfg.hand.named_poses["open"])
        self._arm_sp = d.ctrl[self._arm_ctrl].copy()  # servo set-points
        self._hand_sp = d.ctrl[self._hand_ctrl][self._hand_cmd_to_act].copy()  # in command order
        self._arm_plan = None
        self._hand_plan = None
        self._hand_target = None
        mujoco.mj_forward(m, d)

    # ------------------------------------------------------------------ episodes

    def reset(self, seed: int | None = None, object_set: str | None = None, object_names: list[str] | None = None,
              num_objects: int | None = None) -> Observation:
        """New episode: robot at home, objects dropped at random stable poses (seeded).

        Args:
            seed: RNG seed (None: a fresh one). Same seed + same arguments -> same scene.
            object_set: Set name or directory (None: keep the current set).
            object_names: Objects of the set to place (None: ``num_objects`` drawn at random).
            num_objects: Count to draw when no names are given (None or <= 0: the config's).

        Raises:
            ResetError: Unknown object names, more objects than fit, no stable placement found.
        """
        if object_set:
            self.object_set = load_object_set(object_set)
        seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        self.last_seed = seed
        rng = np.random.default_rng(seed)
        if object_names:
            specs = []
            for n in object_names:
                try:
                    specs.append(self.object_set.get(n))
                except Exception as exc:
                    raise ResetError(str(exc)) from exc
        else:
            n = num_objects if num_objects is not None and num_objects > 0 else self.cfg.num_objects
            if n > len(self.object_set):
                raise ResetError(f"{n} objects requested, set '{self.object_set.name}' has {len(self.object_set)}")
            idx = rng.choice(len(self.object_set), size=n, replace=False) if n else []
            specs = [self.object_set.objects[int(i)] for i in idx]
        names_seen: dict[str, int] = {}
        objs = []
        for s in specs:
            names_seen[s.name] = names_seen.get(s.name, 0) + 1
            inst = s.name if names_seen[s.name] == 1 else f"{s.name}#{names_seen[s.name]}"
            objs.append(self._make_object(s, inst))
        same = [o.instance for o in objs] == [o.instance for o in self._objects]
        if same:
            objs = self._objects
        else:
            self._compile(objs)
        self._place_objects(rng)
        return Observation(self.time, self.joint_state(), [o.instance for o in self._objects])

    def _footprint(self, obj: _Object, quat: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Rotated part vertices' (x/y centre offset, x/y radius [m], min z [m])."""
        pts = np.vstack(obj.parts) @ _quat_to_rot(quat).T
        c = (pts[:, :2].max(0) + pts[:, :2].min(0)) / 2
        r = float(np.linalg.norm(pts[:, :2] - c, axis=1).max())
        return c, r, float(pts[:, 2].min())

    def _place_objects(self, rng: np.random.Generator) -> None:
        cfg = self.cfg
        (x0, x1), (y0, y1) = cfg.workspace_xy
        top = cfg.scene.table.top_z
        failure = "no objects"
        for attempt in range(cfg.max_placement_tries):
            self._home()
            placed: list[tuple[np.ndarray, float]] = []
            ok = True
            for obj in self._objects:
                quat = random_rotation(rng)
                c, r, zmin = self._footprint(obj, quat)
                for _ in range(200):
                    xy = np.array([rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + r, y1 - r)]) if x1 - x0 > 2 * r and y1 - y0 > 2 * r \
                        else np.array([(x0 + x1) / 2, (y0 + y1) / 2])
                    if all(np.linalg.norm(xy - p) >= r + pr + cfg.object_spacing for p, pr in placed):
                        break
                else:
                    ok = False
                    failure = f"no room for '{obj.instance}' (footprint radius {r:.3f} m) in the workspace {cfg.workspace_xy}"
                    break
                placed.append((xy, r))
                pos = np.array([xy[0] - c[0], xy[1] - c[1], top - zmin + cfg.drop_height])
                self.data.qpos[obj.qpos_adr:obj.qpos_adr + 7] = np.concatenate([pos, quat])
                self.data.qvel[obj.dof_adr:obj.dof_adr + 6] = 0
            if not ok:
                continue
            mujoco.mj_forward(self.model, self.data)
            self._advance(int(round(cfg.settle_time_s / self.model.opt.timestep)))
            failure = self._settle_problem()
            if failure is None:
                self._home()  # robot exactly at home again; objects keep their settled poses
                for obj in self._objects:
                    self.data.qvel[obj.dof_adr:obj.dof_adr + 6] = 0
                self.data.time = 0.0
                mujoco.mj_forward(self.model, self.data)
                return
        raise ResetError(f"no stable placement after {cfg.max_placement_tries} tries: {failure}")

    def _settle_problem(self) -> str | None:
        t = self.cfg.scene.table
        for obj in self._objects:
            pos = self.data.xpos[obj.body_id]
            speed = float(np.linalg.norm(self.data.qvel[obj.dof_adr:obj.dof_adr + 3]))
            if pos[2] < t.top_z - 0.05 or abs(pos[0] - t.center_xy[0]) > t.size_xy[0] / 2 or abs(pos[1] - t.center_xy[1]) > t.size_xy[1] / 2:
                return f"'{obj.instance}' left the table"
            if speed > self.cfg.settle_speed:
                return f"'{obj.instance}' still moves at {speed:.3f} m/s"
        for c in self.data.contact[: self.data.ncon]:
            b1, b2 = int(self.model.geom_bodyid[c.geom1]), int(self.model.geom_bodyid[c.geom2])
            if (b1 in self._robot_bodies) != (b2 in self._robot_bodies) and 0 not in (b1, b2):
                return "an object touches the robot"
        return None

    def spawn_object(self, name: str, world_T_object: np.ndarray | None = None, object_set: str | None = None,
                     pos: np.ndarray | None = None, quat: np.ndarray | None = None, settle: bool = True) -> str:
        """Add one object of the current (or given) set at a pose; the robot's state is kept.

        Args:
            name: Object name in the set.
            world_T_object: (4, 4) pose, or give ``pos`` (3,) [m] and ``quat`` (4,) (w, x, y, z).
            object_set: Take the object from this set (the env's set is unchanged).
            settle: Simulate ``settle_time_s`` afterwards (the clock advances; plans keep running).

        Returns:
            The instance name (``name`` or ``name#k`` for repeats).

        Raises:
            ResetError: Unknown object, non-finite pose, pose off the table.
        """
        objset = load_object_set(object_set) if object_set else self.object_set
        try:
            spec = objset.get(name)
        except Exception as exc:
            raise ResetError(str(exc)) from exc
        if world_T_object is not None:
            T = np.asarray(world_T_object, dtype=np.float64)
            if T.shape != (4, 4):
                raise ResetError(f"world_T_object must be (4, 4), got {T.shape}")
            pos, quat = T[:3, 3], _rot_to_quat(T[:3, :3])
        pos = np.asarray(pos if pos is not None else [0.0, 0.5, 0.0], dtype=np.float64)
        quat = np.asarray(quat if quat is not None else [1.0, 0.0, 0.0, 0.0], dtype=np.float64)
        if pos.shape != (3,) or quat.shape != (4,) or not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
            raise ResetError("spawn pose must be a finite position (3,) and quaternion (4,)")
        qn = np.linalg.norm(quat)
        if qn < 1e-6:
            raise ResetError("spawn quaternion has zero norm")
        quat = quat / qn
        t = self.cfg.scene.table
        if abs(pos[0] - t.center_xy[0]) > t.size_xy[0] / 2 or abs(pos[1] - t.center_xy[1]) > t.size_xy[1] / 2:
            raise ResetError(f"spawn position {pos.round(3).tolist()} is not above the table")
        count = sum(1 for o in self._objects if o.spec.name == spec.name)
        inst = spec.name if count == 0 else f"{spec.name}#{count + 1}"
        obj = self._make_object(spec, inst)
        _, _, zmin = self._footprint(obj, quat)
        pos = pos.copy()
        pos[2] = max(pos[2], t.top_z - zmin + self.cfg.drop_height)
        # Save the state, rebuild, restore.
        old = {o.instance: (self.data.qpos[o.qpos_adr:o.qpos_adr + 7].copy(), self.data.qvel[o.dof_adr:o.dof_adr + 6].copy())
               for o in self._objects}
        robot_state = (self.data.qpos[self._arm_q].copy(), self.data.qpos[self._hand_q].copy(), self.data.qvel[self._arm_v].copy(),
                       self.data.qvel[self._hand_v].copy(), self.data.ctrl[self._arm_ctrl].copy(), self.data.ctrl[self._hand_ctrl].copy(),
                       self.data.ctrl[self._arm_kv_ctrl].copy())
        plans = (self._arm_plan, self._hand_plan, self._hand_target, self._arm_sp.copy(), self._hand_sp.copy())
        now = self.data.time
        self._compile(self._objects + [obj])
        d = self.data
        for o in self._objects[:-1]:
            d.qpos[o.qpos_adr:o.qpos_adr + 7], d.qvel[o.dof_adr:o.dof_adr + 6] = old[o.instance]
        d.qpos[self._arm_q], d.qpos[self._hand_q], d.qvel[self._arm_v], d.qvel[self._hand_v], \
            d.ctrl[self._arm_ctrl], d.ctrl[self._hand_ctrl], d.ctrl[self._arm_kv_ctrl] = robot_state
        self._arm_plan, self._hand_plan, self._hand_target, self._arm_sp, self._hand_sp = plans
        d.qpos[obj.qpos_adr:obj.qpos_adr + 7] = np.concatenate([pos, quat])
        d.time = now
        mujoco.mj_forward(self.model, d)
        if settle:
            self.step_time(self.cfg.settle_time_s)
        return inst

    # ------------------------------------------------------------------ stepping

    @property
    def time(self) -> float:
        """Simulated time since the episode started [s]."""
        return float(self.data.time)

    @property
    def dt(self) -> float:
        """Physics time step [s]."""
        return float(self.model.opt.timestep)

    def _busy(self) -> bool:
        if self._arm_plan is not None or self._hand_plan is not None:
            return True
        if self._hand_target is not None:
            return bool(np.any(np.abs(self._hand_sp - self._hand_target) > 1e-12))
        return False

    def _update_setpoints(self, dt: float) -> None:
        """Sample the active plans at the end of the next ``dt`` [s], rate-limit the set-points to
        the velocity limits, and write the servos' set-points (and the arm's set-point velocities to
        its kv actuators)."""
        d = self.data
        t = d.time + dt
        arm_v = np.zeros(len(self._arm_sp))
        if self._arm_plan is not None:
            want = self._arm_plan.sample(t)
            step = self.arm_channel.vel_limit * dt
            new = np.clip(self._arm_sp + np.clip(want - self._arm_sp, -step, step), self._arm_range[:, 0], self._arm_range[:, 1])
            arm_v = (new - self._arm_sp) / dt
            self._arm_sp = new
            if t >= self._arm_plan.end_time and np.allclose(new, want, atol=1e-12):
                self._arm_plan = None
                arm_v[:] = 0.0
        d.ctrl[self._arm_ctrl] = self._arm_sp
        d.ctrl[self._arm_kv_ctrl] = arm_v
        hand_want = None
        if self._hand_plan is not None:
            hand_want = self._hand_plan.sample(t)
            if t >= self._hand_plan.end_time:
                self._hand_target, self._hand_plan = hand_want, None
        elif self._hand_target is not None:
            hand_want = self._hand_target
        ch = self.hand_channel
        idx = self._hand_ctrl[self._hand_cmd_to_act]
        if hand_want is not None:
            step = ch.vel_limit * dt
            new = np.clip(self._hand_sp + np.clip(hand_want - self._hand_sp, -step, step), ch.lower, ch.upper)
            self._hand_sp = new
            if self._hand_plan is None and np.allclose(new, hand_want, atol=1e-12):
                self._hand_target = None
        d.ctrl[idx] = self._hand_sp

    def _advance(self, n: int) -> None:
        m, d = self.model, self.data
        dec = max(1, self.cfg.control_decimation)
        done = 0
        while done < n:
            if self._busy():
                self._update_setpoints(m.opt.timestep * dec)
                k = min(dec, n - done)
            else:
                k = n - done
            mujoco.mj_step(m, d, nstep=k)
            done += k

    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps (commands are followed, set-points rate-limited)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._advance(int(n))

    def step_time(self, duration: float) -> int:
        """Advance by ``duration`` [s] (rounded to whole steps). Returns the steps taken."""
        n = int(round(max(0.0, duration) / self.dt))
        self._advance(n)
        return n

    # ------------------------------------------------------------------ commands

    def command_arm(self, cmd: JointTrajectoryCommand) -> None:
        """Arm trajectory (driver names), replacing the current one.

        Raises:
            CommandRejected: see :func:`dex_sim.commands.validate_trajectory`; nothing changes then.
        """
        self._arm_plan = validate_trajectory(self.arm_channel, cmd, self.time, self._arm_sp.copy(), self.cfg.tolerances)

    def command_hand(self, cmd: JointStateCommand | JointTrajectoryCommand) -> None:
        """Hand command in the driver's form: LEAP ``JointStateCommand`` (driver order and offset),
        Shadow ``JointTrajectoryCommand`` (20 actuated names). Replaces the current one.

        Raises:
            CommandRejected: wrong type for this hand, or see the validators; nothing changes then.
        """
        ch = self.hand_channel
        if ch.kind == "joint_state":
            self._hand_target = validate_joint_state(ch, cmd, self.cfg.tolerances)
            self._hand_plan = None
        else:
            self._hand_plan = validate_trajectory(ch, cmd, self.time, self._hand_sp.copy(), self.cfg.tolerances)
            self._hand_target = None

    def hand_command_from_joints(self, q_hand: np.ndarray, duration: float = 1.0):
        """A driver-form hand command reaching model joint positions ``q_hand`` (hand.joints order):
        what a client of the real driver would send. ``duration`` [s] for trajectory drivers."""
        act = self.robot.cfg.hand.actuated_from_joints(np.asarray(q_hand, dtype=np.float64))
        ch = self.hand_channel
        values = act[self._hand_cmd_to_act] * ch.scale + ch.offset
        if ch.kind == "joint_state":
            return JointStateCommand(values.tolist(), list(ch.names))
        return JointTrajectoryCommand(list(ch.names), [TrajectoryPoint(values.tolist(), float(duration))])

    def hand_trajectory_from_joints(self, t: np.ndarray, q_hand: np.ndarray) -> JointTrajectoryCommand:
        """A multi-point driver-form hand trajectory through model joint positions ``q_hand`` (K, n)
        (hand.joints order) at times ``t`` (K,) [s] from receipt (samples at ``t <= 0`` are left
        out: the controller starts from its own set-point). Trajectory drivers (Shadow) only.
        Where the controller's set-point is farther from the first sample than 90 % of its velocity
        limits cover by that sample's time (a finger held back by the object: the set-point ran
        ahead of the measured joints the trajectory was computed from), every sample is delayed by
        the difference, as a careful client of the real driver would do from the controller state.

        Raises:
            CommandRejected: the hand is not driven by trajectories, or no sample after ``t = 0``.
        """
        ch = self.hand_channel
        if ch.kind == "joint_state":
            raise CommandRejected("this hand's driver takes JointState targets, not trajectories")
        t = np.asarray(t, dtype=np.float64)
        q_hand = np.asarray(q_hand, dtype=np.float64).reshape(len(t), -1)
        keep = np.flatnonzero(t > 0)
        if not len(keep):
            raise CommandRejected("a hand trajectory needs a sample after t = 0")
        servo = np.stack([self.robot.cfg.hand.actuated_from_joints(q_hand[k])[self._hand_cmd_to_act] for k in keep])
        first_leg = np.abs(servo[0] - self._hand_sp) / (0.9 * np.asarray(ch.vel_limit, dtype=np.float64))
        delay = max(0.0, float(first_leg.max()) - float(t[keep[0]]))
        return JointTrajectoryCommand(list(ch.names), [TrajectoryPoint((servo[i] * ch.scale + ch.offset).tolist(),
                                                                        float(t[k]) + delay)
                                                       for i, k in enumerate(keep)])

    def cancel(self) -> None:
        """Stop following commands; hold the current set-points."""
        self._arm_plan = None
        self._hand_plan = None
        self._hand_target = None
        self.data.ctrl[self._arm_ctrl] = self._arm_sp
        self.data.ctrl[self._arm_kv_ctrl] = 0.0
        self.data.ctrl[self._hand_ctrl[self._hand_cmd_to_act]] = self._hand_sp

    def servo_setpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """(arm (6,), hand (m,) in the hand channel's order) servo-space set-points [rad], after rate
        limiting: what the simulated controllers are tracking now."""
        return self._arm_sp.copy(), self._hand_sp.copy()

    @property
    def arm_busy(self) -> bool:
        return self._arm_plan is not None

    @property
    def hand_busy(self) -> bool:
        return self._hand_plan is not None or self._hand_target is not None

    # ------------------------------------------------------------------ state

    def arm_state(self) -> JointStateSample:
        """Arm joint state with the arm driver's names."""
        d, ch = self.data, self.arm_channel
        return JointStateSample(list(ch.names), d.qpos[self._arm_q] * ch.scale + ch.offset, d.qvel[self._arm_v] * ch.scale,
                                d.qfrc_actuator[self._arm_v].copy())

    def hand_state(self) -> JointStateSample:
        """Hand joint state as the hand driver reports it: with a driver joint vector (LEAP), its
        names and ``scale * q + offset``; otherwise the model joint names (Shadow: all 24 joints)."""
        d = self.data
        rcfg = self.robot.cfg
        q, qd, tau = d.qpos[self._hand_q], d.qvel[self._hand_v], d.qfrc_actuator[self._hand_v]
        drv = rcfg.hand.driver
        if drv.joints:
            idx = [rcfg.hand.joints.index(j.joint) for j in drv.joints]
            sc = np.array([j.scale for j in drv.joints])
            off = np.array([j.offset for j in drv.joints])
            return JointStateSample([j.name for j in drv.joints], q[idx] * sc + off, qd[idx] * sc, tau[idx].copy())
        return JointStateSample(list(rcfg.hand.joints), q.copy(), qd.copy(), tau.copy())

    def joint_state(self) -> JointStateSample:
        """Arm + hand in the drivers' names and conventions (what ``/joint_states`` carries)."""
        a, h = self.arm_state(), self.hand_state()
        return JointStateSample(a.names + h.names, np.concatenate([a.position, h.position]),
                                np.concatenate([a.velocity, h.velocity]), np.concatenate([a.effort, h.effort]))

    def model_joint_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(arm q (6,), hand q (n_joints,)) in the model's joint order and convention [rad]."""
        return self.data.qpos[self._arm_q].copy(), self.data.qpos[self._hand_q].copy()

    @property
    def object_names(self) -> list[str]:
        return [o.instance for o in self._objects]

    def object_specs(self) -> dict[str, ObjectSpec]:
        return {o.instance: o.spec for o in self._objects}

    def object_poses(self) -> dict[str, np.ndarray]:
        """EVALUATION ONLY: ``world_T_object`` (4, 4) per placed object instance."""
        out = {}
        for o in self._objects:
            T = np.eye(4)
            T[:3, :3] = self.data.xmat[o.body_id].reshape(3, 3)
            T[:3, 3] = self.data.xpos[o.body_id]
            out[o.instance] = T
        return out

    def object_geom_ids(self) -> dict[str, tuple[int, ...]]:
        return {o.instance: o.geom_ids for o in self._objects}

    # ------------------------------------------------------------------ camera

    def _ensure_renderer(self) -> RGBDRenderer:
        if self._renderer is None:
            c = self.cfg.scene.camera
            self._renderer = RGBDRenderer(self.model, c.width, c.height, far=c.far)
        return self._renderer

    def render(self) -> RGBD:
        """RGB (H, W, 3) uint8 + depth (H, W) float32 [m] (NaN invalid) of the scene camera."""
        return self._ensure_renderer().render(self.data, self._camera_id)

    def render_segmentation(self) -> Segmentation:
        """Per-pixel labels (ground truth for perception tests; see :class:`Segmentation`)."""
        raw = self._ensure_renderer().render_segmentation(self.data, self._camera_id)
        lut = np.full(self.model.ngeom + 1, SEG_BACKGROUND, np.int32)
        labels = {SEG_BACKGROUND: "background", SEG_TABLE: "table", SEG_ROBOT: "robot"}
        lut[self._table_geom] = SEG_TABLE
        for g in range(self.model.ngeom):
            if int(self.model.geom_bodyid[g]) in self._robot_bodies:
                lut[g] = SEG_ROBOT
        for k, o in enumerate(self._objects):
            labels[SEG_FIRST_OBJECT + k] = o.instance
            lut[list(o.geom_ids)] = SEG_FIRST_OBJECT + k
        geom = np.where(raw[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), raw[..., 0], -1)
        return Segmentation(lut[geom], labels)

    def camera_info(self) -> CameraInfo:
        c = self.cfg.scene.camera
        world_T_base = self.robot.cfg.world_T_base.matrix()
        return CameraInfo(c.width, c.height, c.intrinsics(), OPTICAL_FRAME, np.linalg.inv(world_T_base) @ c.world_T_optical(),
                          self.robot.cfg.base_frame)

    def write_calibration(self, path: str | Path) -> Path:
        """Write the camera extrinsics as a calibration YAML (see :mod:`dex_sim.calibration`)."""
        from dex_sim.calibration import write_calibration

        info = self.camera_info()
        return write_calibration(path, info.world_T_optical, info.base_frame, info.frame_id,
                                 note=f"dexgrasp sim scene camera ({self.robot.name}); exact, not estimated")

    def snapshot(self) -> "Snapshot":
        """The state a renderer needs, copied (cheap): hand it to a :class:`SnapshotRenderer` in
        another thread while this env keeps stepping."""
        d = self.data
        return Snapshot(self.model, d.qpos.copy(), d.mocap_pos.copy(), d.mocap_quat.copy(), float(d.time), self._camera_id)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> "SimEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Snapshot:
    """A copy of what rendering needs (see :meth:`SimEnv.snapshot`). ``time`` [s] sim time."""

    model: mujoco.MjModel
    qpos: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray
    time: float
    camera_id: int


class SnapshotRenderer:
    """Renders :class:`Snapshot` s with its own GL context and MjData: use it from ONE thread (the
    one that created it), e.g. a camera thread, while the env steps elsewhere. A new model (after a
    reset that changed the objects) gets a new context automatically."""

    def __init__(self, camera: scene_mod.CameraConfig):
        self.camera = camera
        self._model: mujoco.MjModel | None = None
        self._data: mujoco.MjData | None = None
        self._renderer: RGBDRenderer | None = None

    def _prepare(self, snap: Snapshot) -> None:
        if snap.model is not self._model:
            self.close()
            self._model = snap.model
            self._data = mujoco.MjData(snap.model)
            self._renderer = RGBDRenderer(snap.model, self.camera.width, self.camera.height, far=self.camera.far)
        d = self._data
        d.qpos[:] = snap.qpos
        d.mocap_pos[:] = snap.mocap_pos
        d.mocap_quat[:] = snap.mocap_quat
        d.time = snap.time
        mujoco.mj_kinematics(self._model, d)
        mujoco.mj_camlight(self._model, d)

    def render(self, snap: Snapshot) -> RGBD:
        self._prepare(snap)
        return self._renderer.render(self._data, snap.camera_id)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None
        self._model = None
        self._data = None
