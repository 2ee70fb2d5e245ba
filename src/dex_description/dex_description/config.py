"""Robot combo YAMLs (``config/robots/<name>.yaml``) -> typed, validated, frozen configs.

This module checks the YAML's own shape (types, lengths, required fields); whether the names
exist in the MuJoCo models is checked by :func:`dex_description.compose.load_robot`, which
knows the models. Every error is a :class:`~dex_description.errors.RobotConfigError` naming
the file and the dotted field, e.g. ``hand.servo.kp``.

Units: [m], [rad], [s]. Quaternions (w, x, y, z). Vectors over joints follow the order of the
``joints`` list; vectors over actuators follow ``actuated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dex_description.errors import RobotConfigError, UnknownRobotError
from dex_description.paths import config_dir


@dataclass(frozen=True)
class Pose:
    """A rigid transform ``a_T_b``: translation ``pos`` (3,) [m], unit quaternion ``quat`` (4,) (w, x, y, z)."""

    pos: np.ndarray
    quat: np.ndarray

    def matrix(self) -> np.ndarray:
        """Homogeneous (4, 4) matrix."""
        w, x, y, z = self.quat
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ]
        )
        out = np.eye(4)
        out[:3, :3] = rot
        out[:3, 3] = self.pos
        return out


@dataclass(frozen=True)
class Actuated:
    """One actuator: the joint(s) it drives. Several joints = a coupled sum (Shadow's J0 = J1 + J2)."""

    name: str
    joints: tuple[str, ...]


@dataclass(frozen=True)
class DriverJoint:
    """One entry of a driver's joint vector: ``driver_value = scale * model_value + offset``."""

    name: str
    joint: str
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class DriverConfig:
    """How the real driver is talked to (topics, message types, joint names and conversion).

    Attributes:
        command_topic: Topic the driver takes commands on.
        command_type: ROS message type of the command, e.g. ``trajectory_msgs/msg/JointTrajectory``.
        state_topic: Topic carrying the device's joint states.
        joints: Driver joint vector in driver order; empty means "driver names == model names,
            identity conversion, in the config's joint (or actuated) order".
        command_space: ``joints`` or ``actuated`` (commands name actuators, e.g. ``rh_FFJ0``).
    """

    command_topic: str
    command_type: str
    state_topic: str
    joints: tuple[DriverJoint, ...]
    command_space: str = "joints"


@dataclass(frozen=True)
class ServoConfig:
    """Simulated position servo per actuator: ``torque = kp (target - q) - kv qdot``, clipped.

    Attributes:
        kp: (n_act,) stiffness [N m/rad].
        kv: (n_act,) damping [N m s/rad].
        force_limit: (n_act,) torque limit [N m]; 0 = unlimited.
    """

    kp: np.ndarray
    kv: np.ndarray
    force_limit: np.ndarray


@dataclass(frozen=True)
class PalmFrame:
    """Palm geometry in the hand root frame, for grasp initialisation.

    Attributes:
        center: (3,) a point just in front of the palm surface [m].
        normal: (3,) unit vector the palm faces.
        finger_direction: (3,) unit vector the open fingers point along.
    """

    center: np.ndarray
    normal: np.ndarray
    finger_direction: np.ndarray


@dataclass(frozen=True)
class ContactPoints:
    """Candidate contact points of one finger, in the frame of ``body``.

    Attributes:
        finger: Finger name, e.g. ``index``, ``thumb``.
        body: Link (body) name the points are attached to.
        points: (k, 3) positions [m] in the body frame.
        normals: (k, 3) outward unit normals in the body frame.
    """

    finger: str
    body: str
    points: np.ndarray
    normals: np.ndarray


@dataclass(frozen=True)
class ModelFix:
    """An edit to the upstream MJCF applied at normalisation (data, with its reason).

    Attributes:
        kind: ``geom`` or ``body``.
        name: Element name.
        pos: New (3,) position in the parent frame [m], or None.
        quat: New (4,) orientation (w, x, y, z), or None.
        why: Reason (kept for the docs).
    """

    kind: str
    name: str
    pos: np.ndarray | None
    quat: np.ndarray | None
    why: str


@dataclass(frozen=True)
class ArmConfig:
    """The arm of a combo. Position limits come from the model (see ``compose``)."""

    name: str
    model: str
    base_body: str
    flange_site: str
    joints: tuple[str, ...]
    velocity_limits: np.ndarray
    acceleration_limits: np.ndarray
    servo: ServoConfig
    gravity_compensation: bool
    spheres: Path | None
    named_poses: dict[str, np.ndarray]
    driver: DriverConfig
    model_fixes: tuple[ModelFix, ...] = ()
    visual_mesh_max_faces: int | None = None
    visual_mesh_keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class HandSynthesis:
    """Optional ``hand.synthesis``: the grasp synthesis settings that depend on the hand.

    Attributes:
        squeeze_scale: ``s`` in ``squeeze = grasp + s (grasp - pregrasp)`` (BODex: 1).
        squeeze_force: [N] when > 0, the squeeze presses the grasp's contacts with balanced forces
            whose normal components sum to this (``dex_proposal.squeeze``) instead of the joint-space
            squeeze above; 0 (the default): joint-space squeeze.
        stage_iters: Synthesis stage name -> iterations for this hand (stages not named keep the
            synthesis defaults).
    """

    squeeze_scale: float = 1.0
    squeeze_force: float = 0.0
    stage_iters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class HandConfig:
    """The hand of a combo (also used alone as a floating hand)."""

    name: str
    model: str
    root_body: str
    palm: PalmFrame
    joints: tuple[str, ...]
    actuated: tuple[Actuated, ...]
    velocity_limits: np.ndarray
    servo: ServoConfig
    gravity_compensation: bool
    spheres: Path | None
    contact_points: tuple[ContactPoints, ...]
    named_poses: dict[str, np.ndarray]
    driver: DriverConfig
    model_fixes: tuple[ModelFix, ...] = ()
    visual_mesh_max_faces: int | None = None
    visual_mesh_keep: tuple[str, ...] = ()
    synthesis: HandSynthesis = field(default_factory=HandSynthesis)

    @property
    def actuated_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actuated)

    def actuation_matrix(self) -> np.ndarray:
        """``A`` (n_act, n_joints) with ``u = A q``: an actuator's value is the sum of its joints."""
        index = {j: i for i, j in enumerate(self.joints)}
        mat = np.zeros((len(self.actuated), len(self.joints)))
        for row, act in enumerate(self.actuated):
            for j in act.joints:
                mat[row, index[j]] = 1.0
        return mat

    def joints_from_actuated(self, u: np.ndarray) -> np.ndarray:
        """Joint positions (..., n_joints) for actuator targets (..., n_act); coupled joints split equally."""
        mat = self.actuation_matrix()
        split = mat.T / np.maximum(mat.sum(axis=1), 1.0)[None, :]
        return np.asarray(u) @ split.T

    def actuated_from_joints(self, q: np.ndarray) -> np.ndarray:
        """Actuator values (..., n_act) for joint positions (..., n_joints)."""
        return np.asarray(q) @ self.actuation_matrix().T


@dataclass(frozen=True)
class RobotConfig:
    """One robot combo: arm + hand + mount, as loaded from ``config/robots/<name>.yaml``."""

    name: str
    path: Path
    model_source: str
    base_frame: str
    world_T_base: Pose
    arm: ArmConfig
    hand: HandConfig
    flange_T_root: Pose


# --------------------------------------------------------------------------------------------
# YAML reading with field paths in every error


class _Node:
    """A YAML mapping plus its dotted path, for errors that name the field."""

    def __init__(self, data: Any, path: Path, where: str):
        self.data = data
        self.path = path
        self.where = where

    def err(self, key: str, msg: str) -> RobotConfigError:
        return RobotConfigError(self.path, f"{self.where}.{key}" if self.where else key, msg)

    def _get(self, key: str, default: Any = ...) -> Any:
        if not isinstance(self.data, dict):
            raise RobotConfigError(self.path, self.where or "<root>", "must be a mapping")
        if key not in self.data:
            if default is ...:
                raise self.err(key, "missing")
            return default
        return self.data[key]

    def child(self, key: str) -> "_Node":
        value = self._get(key)
        if not isinstance(value, dict):
            raise self.err(key, f"must be a mapping, got {type(value).__name__}")
        return _Node(value, self.path, f"{self.where}.{key}" if self.where else key)

    def str(self, key: str, default: Any = ...) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value:
            raise self.err(key, f"must be a non-empty string, got {value!r}")
        return value

    def bool(self, key: str, default: Any = ...) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.err(key, f"must be true or false, got {value!r}")
        return value

    def number(self, key: str, default: Any = ...) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise self.err(key, f"must be a finite number, got {value!r}")
        return float(value)

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.err(key, "must be a list of non-empty strings")
        dup = sorted({v for v in value if value.count(v) > 1})
        if dup:
            raise self.err(key, f"duplicate names: {', '.join(dup)}")
        return tuple(value)

    def vector(self, key: str, n: int | None = None, default: Any = ..., positive: bool = False,
               nonneg: bool = False, broadcast: bool = False) -> np.ndarray:
        value = self._get(key, default)
        if broadcast and isinstance(value, (int, float)) and not isinstance(value, bool) and n is not None:
            value = [value] * n
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise self.err(key, f"must be a list of numbers, got {value!r}") from None
        if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
            want = f"{n} numbers" + (" (or one number for all)" if broadcast else "")
            raise self.err(key, f"must be {want}, got {np.shape(value)}")
        if not np.all(np.isfinite(arr)):
            raise self.err(key, "must be finite")
        if positive and np.any(arr <= 0):
            raise self.err(key, "must be > 0")
        if nonneg and np.any(arr < 0):
            raise self.err(key, "must be >= 0")
        return arr

    def pose(self, key: str) -> Pose:
        node = self.child(key)
        pos = node.vector("pos", 3)
        quat = node.vector("quat", 4)
        norm = np.linalg.norm(quat)
        if not 0.99 < norm < 1.01:
            raise node.err("quat", f"must be a unit quaternion (w, x, y, z), norm is {norm:.4f}")
        return Pose(pos=pos, quat=quat / norm)


def _servo(node: _Node, n: int) -> ServoConfig:
    s = node.child("servo")
    return ServoConfig(
        kp=s.vector("kp", n, positive=True, broadcast=True),
        kv=s.vector("kv", n, nonneg=True, broadcast=True),
        force_limit=s.vector("force_limit", n, default=0.0, nonneg=True, broadcast=True),
    )


def _named_poses(node: _Node, n: int, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    poses = node.child("named_poses")
    out = {name: poses.vector(name, n) for name in poses.data}
    for name in required:
        if name not in out:
            raise poses.err(name, "missing (required named pose)")
    return out


def _driver(node: _Node, model_joints: tuple[str, ...], names_key: str | None) -> DriverConfig:
    d = node.child("driver")
    joints: list[DriverJoint] = []
    if names_key is not None:  # a plain list of driver names, one per model joint, identity conversion
        names = d.str_list(names_key)
        if len(names) != len(model_joints):
            raise d.err(names_key, f"must list {len(model_joints)} names, one per joint in order")
        joints = [DriverJoint(name=n, joint=j) for n, j in zip(names, model_joints)]
    else:
        raw = d._get("joints", [])
        if not isinstance(raw, list):
            raise d.err("joints", "must be a list of {name, joint, scale, offset}")
        for i, item in enumerate(raw):
            e = _Node(item, d.path, f"{d.where}.joints[{i}]")
            joint = e.str("joint")
            if joint not in model_joints:
                raise e.err("joint", f"'{joint}' is not one of this hand's joints")
            scale = e.number("scale", 1.0)
            offset = e.number("offset", 0.0)
            if scale == 0.0:
                raise e.err("scale", "must be nonzero")
            name = item.get("name")
            if not isinstance(name, (str, int)):
                raise e.err("name", "must be a string")
            joints.append(DriverJoint(name=str(name), joint=joint, scale=scale, offset=offset))
    space = d.str("command_space", "joints")
    if space not in ("joints", "actuated"):
        raise d.err("command_space", f"must be 'joints' or 'actuated', got {space!r}")
    return DriverConfig(
        command_topic=d.str("command_topic"),
        command_type=d.str("command_type"),
        state_topic=d.str("state_topic"),
        joints=tuple(joints),
        command_space=space,
    )


def _spheres_path(node: _Node, key: str) -> Path | None:
    value = node._get(key, None)
    if value is None:
        return None
    if not isinstance(value, str):
        raise node.err(key, "must be a path relative to the robot YAML's directory")
    return (node.path.parent / value).resolve()


def _actuated(node: _Node, joints: tuple[str, ...]) -> tuple[Actuated, ...]:
    raw = node._get("actuated", None)
    if raw is None:
        return tuple(Actuated(j, (j,)) for j in joints)
    if not isinstance(raw, list):
        raise node.err("actuated", "must be a list of joint names or {name, joints}")
    out, used = [], set()
    for i, item in enumerate(raw):
        where = f"actuated[{i}]"
        if isinstance(item, str):
            act = Actuated(item, (item,))
        elif isinstance(item, dict):
            e = _Node(item, node.path, f"{node.where}.{where}")
            act = Actuated(e.str("name"), e.str_list("joints"))
        else:
            raise node.err(where, f"must be a joint name or {{name, joints}}, got {item!r}")
        for j in act.joints:
            if j not in joints:
                raise node.err(where, f"'{j}' is not in hand.joints")
            if j in used:
                raise node.err(where, f"joint '{j}' is driven by two actuators")
            used.add(j)
        out.append(act)
    return tuple(out)


def _contact_points(node: _Node) -> tuple[ContactPoints, ...]:
    raw = node._get("contact_points", {})
    if not isinstance(raw, dict):
        raise node.err("contact_points", "must be a mapping finger -> {body, points, normals}")
    out = []
    for finger in raw:
        f = _Node(raw[finger], node.path, f"{node.where}.contact_points.{finger}")
        pts = np.asarray(f._get("points"), dtype=np.float64)
        nrm = np.asarray(f._get("normals"), dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
            raise f.err("points", "must be a non-empty list of [x, y, z]")
        if nrm.shape != pts.shape:
            raise f.err("normals", f"must have the shape of points {pts.shape}, got {nrm.shape}")
        norms = np.linalg.norm(nrm, axis=1)
        if np.any(np.abs(norms - 1.0) > 1e-3):
            raise f.err("normals", "must be unit vectors")
        out.append(ContactPoints(str(finger), f.str("body"), pts, nrm / norms[:, None]))
    return tuple(out)


def _model_fixes(node: _Node) -> tuple[ModelFix, ...]:
    raw = node._get("model_fixes", [])
    if not isinstance(raw, list):
        raise node.err("model_fixes", "must be a list of {geom|body, pos, quat, why}")
    out = []
    for i, item in enumerate(raw):
        e = _Node(item, node.path, f"{node.where}.model_fixes[{i}]")
        kinds = [k for k in ("geom", "body") if isinstance(item, dict) and k in item]
        if len(kinds) != 1:
            raise node.err(f"model_fixes[{i}]", "must name exactly one 'geom' or 'body'")
        pos = e.vector("pos", 3) if "pos" in item else None
        quat = e.vector("quat", 4) if "quat" in item else None
        if quat is not None:
            quat = quat / np.linalg.norm(quat)
        out.append(ModelFix(kinds[0], e.str(kinds[0]), pos, quat, e.str("why")))
    return tuple(out)


def _max_faces(node: _Node) -> int | None:
    """Optional ``visual_mesh_max_faces``: decimate visual-only meshes above this face count."""
    value = node._get("visual_mesh_max_faces", None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 100:
        raise node.err("visual_mesh_max_faces", f"must be an integer >= 100 (faces per visual mesh), got {value!r}")
    return value


def _keep(node: _Node) -> tuple[str, ...]:
    """Optional ``visual_mesh_keep``: upstream mesh names never decimated (e.g. a visual mesh that
    coincides with a collision mesh, where any change shows)."""
    if node._get("visual_mesh_keep", None) is None:
        return ()
    return node.str_list("visual_mesh_keep")


def _arm(node: _Node) -> ArmConfig:
    a = node.child("arm")
    joints = a.str_list("joints")
    n = len(joints)
    return ArmConfig(
        name=a.str("name"),
        model=a.str("model"),
        base_body=a.str("base_body"),
        flange_site=a.str("flange_site"),
        joints=joints,
        velocity_limits=a.vector("velocity_limits", n, positive=True, broadcast=True),
        acceleration_limits=a.vector("acceleration_limits", n, positive=True, broadcast=True),
        servo=_servo(a, n),
        gravity_compensation=a.bool("gravity_compensation", True),
        spheres=_spheres_path(a, "spheres"),
        named_poses=_named_poses(a, n, ("home",)),
        driver=_driver(a, joints, "joint_names"),
        model_fixes=_model_fixes(a),
        visual_mesh_max_faces=_max_faces(a),
        visual_mesh_keep=_keep(a),
    )


def _hand_synthesis(node: _Node) -> HandSynthesis:
    """Optional ``hand.synthesis`` mapping: ``squeeze_scale`` (> 0), ``squeeze_force`` (>= 0 [N]) and
    ``stage_iters`` (name -> int >= 0)."""
    if node._get("synthesis", None) is None:
        return HandSynthesis()
    s = node.child("synthesis")
    unknown = sorted(set(s.data) - {"squeeze_scale", "squeeze_force", "stage_iters"})
    if unknown:
        raise s.err(unknown[0], "unknown key (known: squeeze_scale, squeeze_force, stage_iters)")
    scale = s.number("squeeze_scale", 1.0)
    if scale <= 0:
        raise s.err("squeeze_scale", f"must be > 0, got {scale}")
    force = s.number("squeeze_force", 0.0)
    if not force >= 0:
        raise s.err("squeeze_force", f"must be >= 0 [N], got {force}")
    iters = s._get("stage_iters", None) or {}
    if not isinstance(iters, dict):
        raise s.err("stage_iters", "must be a mapping stage name -> iterations")
    for k, v in iters.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise s.err("stage_iters", f"{k!r}: must be a stage name -> an integer >= 0, got {v!r}")
    return HandSynthesis(squeeze_scale=scale, squeeze_force=force, stage_iters=dict(iters))


def _hand(node: _Node) -> HandConfig:
    h = node.child("hand")
    joints = h.str_list("joints")
    actuated = _actuated(h, joints)
    palm = h.child("palm")
    normal = palm.vector("normal", 3)
    fingers = palm.vector("finger_direction", 3)
    for key, vec in (("normal", normal), ("finger_direction", fingers)):
        if abs(np.linalg.norm(vec) - 1.0) > 1e-3:
            raise palm.err(key, "must be a unit vector")
    return HandConfig(
        name=h.str("name"),
        model=h.str("model"),
        root_body=h.str("root_body"),
        palm=PalmFrame(center=palm.vector("center", 3), normal=normal, finger_direction=fingers),
        joints=joints,
        actuated=actuated,
        velocity_limits=h.vector("velocity_limits", len(joints), positive=True, broadcast=True),
        servo=_servo(h, len(actuated)),
        gravity_compensation=h.bool("gravity_compensation", True),
        spheres=_spheres_path(h, "spheres"),
        contact_points=_contact_points(h),
        named_poses=_named_poses(h, len(joints), ("open", "pre_shape")),
        driver=_driver(h, joints, None),
        model_fixes=_model_fixes(h),
        visual_mesh_max_faces=_max_faces(h),
        visual_mesh_keep=_keep(h),
        synthesis=_hand_synthesis(h),
    )


def robots_dir() -> Path:
    """``config/robots`` of this installation."""
    return config_dir() / "robots"


def list_robots() -> list[str]:
    """Names of the robot combos that have a YAML."""
    return sorted(p.stem for p in robots_dir().glob("*.yaml"))


def robot_yaml_path(name_or_path: str | Path) -> Path:
    """Resolve a robot name (``ur5e_leap``) or a YAML path to an existing file."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise UnknownRobotError(path.stem, list_robots(), path.parent)
        return path.resolve()
    path = robots_dir() / f"{text}.yaml"
    if not path.is_file():
        raise UnknownRobotError(text, list_robots(), robots_dir())
    return path


def load_robot_config(name_or_path: str | Path) -> RobotConfig:
    """Load and validate a robot combo YAML (shape only; model names: see ``compose.load_robot``).

    Args:
        name_or_path: A robot name under ``config/robots`` (e.g. ``"ur10e_shadow"``) or a YAML path.

    Raises:
        UnknownRobotError: No such robot.
        RobotConfigError: The YAML is malformed; the message names the file and field.
    """
    path = robot_yaml_path(name_or_path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise RobotConfigError(path, "<yaml>", f"not valid YAML: {exc}") from exc
    root = _Node(data, path, "")
    name = root.str("name")
    if name != path.stem:
        raise root.err("name", f"'{name}' must equal the file name '{path.stem}'")
    base = root.child("base")
    mount = root.child("mount")
    return RobotConfig(
        name=name,
        path=path,
        model_source=root.str("model_source"),
        base_frame=base.str("frame"),
        world_T_base=base.pose("world_T_base"),
        arm=_arm(root),
        hand=_hand(root),
        flange_T_root=mount.pose("flange_T_root"),
    )
