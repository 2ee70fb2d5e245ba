"""Normalise the upstream MJCF models and compose them with MjSpec.

What normalisation does to an upstream model (see ``docs/ARCHITECTURE.md``):

* the hand's extra freejoint and every keyframe are removed;
* mesh paths become absolute (``to_xml()`` output stays loadable) and assets and default classes
  get a model prefix (``leap_right/black``) so that two models never clash, while bodies,
  joints, sites, actuators and tendons keep their upstream names;
* actuators become position servos with ``kp``/``kv``/force limits from the robot YAML (the arm's
  ``kv`` as a separate velocity actuator per joint, see :func:`_apply_arm_servos`);
* robot bodies get gravity compensation where the YAML asks for it (the real controllers hold
  their own weight);
* physics options are set once on the composed model (children's are dropped on attach).

Compositions: :func:`robot_spec` (arm + hand on the flange, base at ``world_T_base``) and
:func:`floating_hand_spec` (the hand alone, root fixed at the world origin, on a mocap body, or
free). :func:`load_robot` validates a config against its models and is the entry point most
code wants.
"""

from __future__ import annotations

import contextlib
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from dex_description.config import ArmConfig, HandConfig, RobotConfig, load_robot_config
from dex_description.errors import ModelFileError, RobotConfigError
from dex_description.models import load_manifest, model_file, source_dir


@dataclass(frozen=True)
class PhysicsOptions:
    """MuJoCo options of a composed model. ``default_config()``-style: construct, then override.

    Attributes:
        timestep: Integration step [s].
        integrator: ``implicitfast`` (stable with stiff position servos), ``euler``, ``rk4``, ``implicit``.
        cone: Friction cone, ``elliptic`` or ``pyramidal``.
        impratio: Frictional-to-normal impedance ratio (higher: less slip).
        gravity: (3,) [m/s^2].
    """

    timestep: float = 0.002
    integrator: str = "implicitfast"
    cone: str = "elliptic"
    impratio: float = 10.0
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)


def default_physics() -> PhysicsOptions:
    """The physics options dexgrasp uses unless told otherwise."""
    return PhysicsOptions()


_INTEGRATORS = {
    "euler": mujoco.mjtIntegrator.mjINT_EULER,
    "rk4": mujoco.mjtIntegrator.mjINT_RK4,
    "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT,
    "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
}
_CONES = {"pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL, "elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC}


def apply_physics(spec: mujoco.MjSpec, physics: PhysicsOptions) -> None:
    """Set a spec's physics options."""
    spec.option.timestep = physics.timestep
    spec.option.integrator = _INTEGRATORS[physics.integrator]
    spec.option.cone = _CONES[physics.cone]
    spec.option.impratio = physics.impratio
    spec.option.gravity = np.asarray(physics.gravity, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Loading one upstream model


@dataclass
class _Upstream:
    """An upstream MJCF file parsed both by MuJoCo (spec) and ElementTree (for facts the spec hides)."""

    path: Path
    spec: mujoco.MjSpec
    default_classes: list[str]
    fixed_tendons: dict[str, dict[str, float]]  # tendon name -> {joint: coef}


def _load_upstream(relpath: str, source: str) -> _Upstream:
    path = model_file(relpath, source)
    manifest = load_manifest(source)
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise ModelFileError(path, f"not valid XML: {exc}") from exc
    root = tree.getroot()
    classes = [e.get("class") for e in root.iter("default") if e.get("class")]
    tendons = {}
    for fixed in root.iter("fixed"):
        tendons[fixed.get("name", "")] = {j.get("joint"): float(j.get("coef", "1")) for j in fixed.iter("joint")}
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except Exception as exc:  # mujoco raises ValueError with the parser's message
        raise ModelFileError(path, f"MuJoCo cannot parse it: {exc}") from exc
    # Absolute mesh paths, each checked against the manifest (missing/corrupt mesh -> named error).
    meshdir = Path(path.parent, spec.meshdir or "")
    for mesh in spec.meshes:
        mesh_path = (meshdir / mesh.file).resolve()
        rel = os.path.relpath(mesh_path, source_dir(source))
        if rel in manifest.files:
            model_file(rel, source)
        elif not mesh_path.is_file():
            raise ModelFileError(mesh_path, f"mesh '{mesh.name}' of {path} is missing")
        mesh.file = str(mesh_path)
    spec.meshdir = ""
    for tex in spec.textures:
        if tex.file:
            tex.file = str((Path(path.parent, spec.texturedir or "") / tex.file).resolve())
    spec.texturedir = ""
    return _Upstream(path, spec, classes, tendons)


def _prefix_assets(up: _Upstream, prefix: str) -> None:
    """Prefix mesh/material/texture names and default classes (keeps bodies/joints/... unprefixed)."""
    spec = up.spec
    for mesh in spec.meshes:
        mesh.name = prefix + mesh.name
    for tex in spec.textures:
        if tex.name:
            tex.name = prefix + tex.name
    for mat in spec.materials:
        mat.name = prefix + mat.name
        mat.textures = [prefix + t if t else t for t in mat.textures]
    for geom in spec.geoms:
        if geom.meshname:
            geom.meshname = prefix + geom.meshname
        if geom.material:
            geom.material = prefix + geom.material
    for site in spec.sites:
        if site.material:
            site.material = prefix + site.material
    for name in up.default_classes:
        default = spec.find_default(name)
        if default is not None:
            default.name = prefix + name


def mesh_cache_dir() -> Path:
    """Decimated visual meshes: ``$DEXGRASP_CACHE_DIR/meshes`` or ``$XDG_CACHE_HOME/dexgrasp/meshes``."""
    env = os.environ.get("DEXGRASP_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "meshes"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "dexgrasp" / "meshes"


def _decimated_copy(src: Path, max_faces: int) -> Path | None:
    """A copy of mesh ``src`` with at most ~``max_faces`` faces (fast-simplification, quadric
    decimation), cached by the source's SHA-256 + target; None if it is small enough or textured."""
    import hashlib

    import fast_simplification
    import trimesh

    data = src.read_bytes()
    key = hashlib.sha256(data).hexdigest()[:24]
    out = mesh_cache_dir() / f"{key}_{max_faces}.obj"
    if out.is_file():
        return out
    mesh = trimesh.load(str(src), force="mesh", process=False)
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or not len(uv):
        mesh.merge_vertices()  # decimation needs a connected surface, not a triangle soup
    if len(mesh.faces) <= max_faces or (uv is not None and len(uv)):
        return None
    pts, faces = np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.int32)
    for _ in range(4):  # a pass may stop short of the target (topology); repeat on the result
        if len(faces) <= max_faces:
            break
        pts, faces = fast_simplification.simplify(pts, faces, target_reduction=1.0 - max_faces / len(faces))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    trimesh.Trimesh(pts, faces, process=False).export(str(tmp), file_type="obj", include_normals=False, include_texture=False)
    tmp.replace(out)
    return out


def decimate_visual_meshes(spec: mujoco.MjSpec, max_faces: int | None, keep: tuple[str, ...] = (),
                           cfg_path: Path | None = None, where: str = "") -> dict[str, Path]:
    """Point every *visual-only* mesh (all geoms using it have ``contype = conaffinity = 0``) with
    more than ``max_faces`` faces at a decimated cached copy. Meshes used by any colliding geom are
    never touched, so collision geometry (and, with explicit inertials, dynamics) stay unchanged.

    Args:
        spec: An upstream spec (mesh names not yet prefixed).
        max_faces: Face budget per visual mesh; None/0: do nothing.
        keep: Mesh names never decimated (each must exist: else :class:`RobotConfigError`).

    Returns:
        {mesh name: decimated file} of the meshes replaced.
    """
    names = {m.name for m in spec.meshes}
    for i, name in enumerate(keep):
        if name not in names:
            raise RobotConfigError(cfg_path or Path("?"), f"{where}.visual_mesh_keep[{i}]",
                                   f"no mesh '{name}'; meshes: {', '.join(sorted(names))}")
    if not max_faces:
        return {}
    try:
        import fast_simplification  # noqa: F401
        import trimesh  # noqa: F401
    except ImportError as exc:  # an optimisation only: keep the full meshes
        warnings.warn(f"visual_mesh_max_faces is set but {exc.name} is not installed "
                      "(pip install fast-simplification trimesh); rendering the full visual meshes", RuntimeWarning, stacklevel=2)
        return {}
    colliding, used = set(), set()
    for geom in spec.geoms:
        if geom.meshname:
            used.add(geom.meshname)
            if geom.contype != 0 or geom.conaffinity != 0:
                colliding.add(geom.meshname)
    out = {}
    for mesh in spec.meshes:
        if mesh.name in used and mesh.name not in colliding and mesh.name not in keep and mesh.file:
            copy = _decimated_copy(Path(mesh.file), int(max_faces))
            if copy is not None:
                mesh.file = str(copy)
                out[mesh.name] = copy
    return out


def _apply_fixes(spec: mujoco.MjSpec, fixes, cfg_path: Path, where: str, model_path: Path) -> None:
    for i, fix in enumerate(fixes):
        element = spec.geom(fix.name) if fix.kind == "geom" else spec.body(fix.name)
        if element is None:
            raise RobotConfigError(cfg_path, f"{where}.model_fixes[{i}].{fix.kind}", f"no {fix.kind} '{fix.name}' in {model_path}")
        if fix.pos is not None:
            element.pos = fix.pos
        if fix.quat is not None:
            element.quat = fix.quat


def _strip_keys_and_root_joints(spec: mujoco.MjSpec, root: mujoco.MjsBody) -> None:
    for joint in list(root.joints):
        if joint.type == mujoco.mjtJoint.mjJNT_FREE:
            spec.delete(joint)
    for key in list(spec.keys):
        spec.delete(key)


def _subtree(body: mujoco.MjsBody) -> list[mujoco.MjsBody]:
    out, stack = [], [body]
    while stack:
        b = stack.pop()
        out.append(b)
        stack.extend(b.bodies)
    return out


def _body_or_error(spec: mujoco.MjSpec, name: str, cfg_path: Path, field_name: str, model_path: Path):
    body = spec.body(name)
    if body is None:
        known = ", ".join(b.name for b in spec.bodies if b.name)
        raise RobotConfigError(cfg_path, field_name, f"no body '{name}' in {model_path}; bodies: {known}")
    return body


def _check_joints(spec: mujoco.MjSpec, joints: tuple[str, ...], cfg_path: Path, field_name: str, model_path: Path):
    known = [j.name for j in spec.joints if j.name and j.type != mujoco.mjtJoint.mjJNT_FREE]
    for i, name in enumerate(joints):
        if name not in known:
            raise RobotConfigError(
                cfg_path, f"{field_name}[{i}]", f"no joint '{name}' in {model_path}; joints: {', '.join(known)}"
            )
    missing = [j for j in known if j not in joints]
    if missing:
        raise RobotConfigError(cfg_path, field_name, f"does not list model joints {', '.join(missing)} of {model_path}")


def _set_servo(act: mujoco.MjsActuator, kp: float, kv: float, force_limit: float, ctrl_range: np.ndarray) -> None:
    act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
    act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
    gain = np.zeros_like(np.asarray(act.gainprm))
    gain[0] = kp
    bias = np.zeros_like(np.asarray(act.biasprm))
    bias[1], bias[2] = -kp, -kv
    act.gainprm = gain
    act.biasprm = bias
    act.ctrlrange = np.asarray(ctrl_range, dtype=np.float64)
    act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
    if force_limit > 0:
        act.forcerange = np.array([-force_limit, force_limit])
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    else:
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_FALSE


def _joint_range(spec: mujoco.MjSpec, name: str) -> np.ndarray:
    j = spec.joint(name)
    return np.asarray(j.range, dtype=np.float64)


def _apply_arm_servos(up: _Upstream, arm: ArmConfig, cfg_path: Path) -> list[str]:
    """Rebuild the arm's actuators as one position servo per joint, in config order, each with a
    velocity actuator ``<servo>/kv`` (gain ``kv``, control = the set-point velocity [rad/s]).

    Together they give the servo ``kp (q_sp - q) + kv (v_sp - qdot)``, the position part clipped to
    the joint's force limit and the damping part not. With both parts in one force-limited
    actuator, the implicit integrator (which treats ``kv`` as acting even while the force is
    clipped) locked UR10e + Shadow into a 2-step oscillation after a hold mid-reach: wrist_3 at
    +-0.51 rad/s every 2 ms with the motor saturated at +-56 N m both ways and the position still to
    1 mrad (``test_the_arm_comes_to_rest_after_a_hold_mid_reach``). Passive joint damping instead
    cures that but then moving at all needs ``kv v`` through the clipped motor (UR5e wrists:
    28 N m / 200 N m s/rad = 0.14 rad/s). Returns the position servos' names.
    """
    spec = up.spec
    for act in list(spec.actuators):
        spec.delete(act)
    names = []
    for i, joint in enumerate(arm.joints):
        act = spec.add_actuator()
        act.name = f"{arm.name}/{joint}"
        act.trntype = mujoco.mjtTrn.mjTRN_JOINT
        act.target = joint
        _set_servo(act, arm.servo.kp[i], 0.0, arm.servo.force_limit[i], _joint_range(spec, joint))
        names.append(act.name)
        damp = spec.add_actuator()
        damp.name = f"{act.name}/kv"
        damp.trntype = mujoco.mjtTrn.mjTRN_JOINT
        damp.target = joint
        damp.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        damp.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        gain = np.zeros_like(np.asarray(damp.gainprm))
        gain[0] = arm.servo.kv[i]
        bias = np.zeros_like(np.asarray(damp.biasprm))
        bias[2] = -arm.servo.kv[i]
        damp.gainprm, damp.biasprm = gain, bias
        damp.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        damp.forcelimited = mujoco.mjtLimited.mjLIMITED_FALSE
    return names


def _apply_hand_servos(up: _Upstream, hand: HandConfig, cfg_path: Path) -> list[str]:
    """Match each config actuator to the model's actuator driving the same joint(s); set its servo."""
    spec = up.spec
    by_joint, by_tendon = {}, {}
    for act in spec.actuators:
        if act.trntype == mujoco.mjtTrn.mjTRN_JOINT:
            by_joint[act.target] = act
        elif act.trntype == mujoco.mjtTrn.mjTRN_TENDON:
            by_tendon[act.target] = act
    used, names = set(), []
    for i, entry in enumerate(hand.actuated):
        where = f"hand.actuated[{i}]"
        if len(entry.joints) == 1:
            act = by_joint.get(entry.joints[0])
            lo_hi = _joint_range(spec, entry.joints[0])
        else:
            act = None
            for tendon, coefs in up.fixed_tendons.items():
                if set(coefs) == set(entry.joints) and all(abs(c - 1.0) < 1e-9 for c in coefs.values()):
                    act = by_tendon.get(tendon)
            ranges = np.array([_joint_range(spec, j) for j in entry.joints])
            lo_hi = ranges.sum(axis=0)
        if act is None:
            raise RobotConfigError(
                cfg_path, where,
                f"no actuator in {up.path} drives {' + '.join(entry.joints)}"
                + (" (for a coupled entry: a fixed tendon with coef 1 on exactly these joints)" if len(entry.joints) > 1 else ""),
            )
        used.add(act.name)
        _set_servo(act, hand.servo.kp[i], hand.servo.kv[i], hand.servo.force_limit[i], lo_hi)
        act.name = f"{hand.name}/{entry.name}"
        names.append(act.name)
    for act in list(spec.actuators):
        if act.name not in names:
            raise RobotConfigError(cfg_path, "hand.actuated", f"model actuator '{act.name}' of {up.path} is not listed")
    return names


def load_hand_spec(hand: HandConfig, source: str, cfg_path: Path) -> tuple[mujoco.MjSpec, list[str]]:
    """The normalised hand spec (root at its own origin, no freejoint) and its actuator names in config order."""
    up = _load_upstream(hand.model, source)
    root = _body_or_error(up.spec, hand.root_body, cfg_path, "hand.root_body", up.path)
    _strip_keys_and_root_joints(up.spec, root)
    _apply_fixes(up.spec, hand.model_fixes, cfg_path, "hand", up.path)
    decimate_visual_meshes(up.spec, hand.visual_mesh_max_faces, hand.visual_mesh_keep, cfg_path, "hand")
    _check_joints(up.spec, hand.joints, cfg_path, "hand.joints", up.path)
    for cp in hand.contact_points:
        _body_or_error(up.spec, cp.body, cfg_path, f"hand.contact_points.{cp.finger}.body", up.path)
    _prefix_assets(up, f"{hand.name}/")
    act_names = _apply_hand_servos(up, hand, cfg_path)
    root.pos = np.zeros(3)
    root.quat = np.array([1.0, 0.0, 0.0, 0.0])
    for body in _subtree(root):
        body.gravcomp = 1.0 if hand.gravity_compensation else 0.0
    return up.spec, act_names


def load_arm_spec(arm: ArmConfig, source: str, cfg_path: Path) -> tuple[mujoco.MjSpec, list[str]]:
    """The normalised arm spec and its actuator names (joint order)."""
    up = _load_upstream(arm.model, source)
    base = _body_or_error(up.spec, arm.base_body, cfg_path, "arm.base_body", up.path)
    _strip_keys_and_root_joints(up.spec, base)
    _apply_fixes(up.spec, arm.model_fixes, cfg_path, "arm", up.path)
    decimate_visual_meshes(up.spec, arm.visual_mesh_max_faces, arm.visual_mesh_keep, cfg_path, "arm")
    _check_joints(up.spec, arm.joints, cfg_path, "arm.joints", up.path)
    if up.spec.site(arm.flange_site) is None:
        known = ", ".join(s.name for s in up.spec.sites if s.name)
        raise RobotConfigError(cfg_path, "arm.flange_site", f"no site '{arm.flange_site}' in {up.path}; sites: {known}")
    _prefix_assets(up, f"{arm.name}/")
    act_names = _apply_arm_servos(up, arm, cfg_path)
    for body in _subtree(base):
        body.gravcomp = 1.0 if arm.gravity_compensation else 0.0
    for light in list(up.spec.lights):
        up.spec.delete(light)
    return up.spec, act_names


@contextlib.contextmanager
def quiet_empty_prefix():
    """Drop MuJoCo's "attaching with an empty prefix" notice (names are kept unique by
    :func:`_prefix_assets`); every other MuJoCo warning still reaches Python's ``warnings``."""
    previous = mujoco.get_mju_user_warning()

    def handler(msg: str) -> None:
        if "empty prefix" not in msg:
            warnings.warn(f"MuJoCo: {msg.strip()}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*empty prefix.*")
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _attach(parent_frame, child_body, what: str) -> None:
    with quiet_empty_prefix():
        parent_frame.attach_body(child_body, "", "")


def _check_limits(cfg_path: Path, where: str, names: tuple[str, ...], spec: mujoco.MjSpec, poses: dict) -> None:
    ranges = np.array([_joint_range(spec, n) for n in names])
    for pose_name, q in poses.items():
        bad = [(n, v, lo, hi) for n, v, (lo, hi) in zip(names, q, ranges) if not lo - 1e-9 <= v <= hi + 1e-9]
        if bad:
            n, v, lo, hi = bad[0]
            raise RobotConfigError(cfg_path, f"{where}.named_poses.{pose_name}",
                                   f"{n} = {v} outside the joint range [{lo}, {hi}]")


@dataclass
class ComposedSpec:
    """A composed spec plus the names needed to drive it.

    Attributes:
        spec: The MjSpec (compile with :func:`compile_spec`).
        arm_actuators: Arm actuator names in ``arm.joints`` order (empty for a floating hand).
        hand_actuators: Hand actuator names in ``hand.actuated`` order.
        root_body: Name of the hand root body (the "wrist").
        mocap_body: Name of the mocap body carrying the hand, or ``None``.
    """

    spec: mujoco.MjSpec
    arm_actuators: list[str]
    hand_actuators: list[str]
    root_body: str
    mocap_body: str | None = None


def robot_spec(cfg: RobotConfig, physics: PhysicsOptions | None = None) -> ComposedSpec:
    """Arm + hand, hand root on the flange at ``flange_T_root``, arm base at ``world_T_base``.

    Keyframes ``home`` (arm home, hand open) and ``pre_shape`` (arm home, hand pre-shape) are added.
    """
    physics = physics or default_physics()
    arm_spec, arm_acts = load_arm_spec(cfg.arm, cfg.model_source, cfg.path)
    hand_spec, hand_acts = load_hand_spec(cfg.hand, cfg.model_source, cfg.path)
    _check_limits(cfg.path, "arm", cfg.arm.joints, arm_spec, cfg.arm.named_poses)
    _check_limits(cfg.path, "hand", cfg.hand.joints, hand_spec, cfg.hand.named_poses)
    spec = mujoco.MjSpec()
    spec.modelname = cfg.name
    spec.compiler.autolimits = True
    apply_physics(spec, physics)
    for s in (arm_spec, hand_spec):
        apply_physics(s, physics)  # identical options: no attach conflicts
    base_frame = spec.worldbody.add_frame()
    base_frame.pos = cfg.world_T_base.pos
    base_frame.quat = cfg.world_T_base.quat
    _attach(base_frame, arm_spec.body(cfg.arm.base_body), "arm")
    flange = spec.site(cfg.arm.flange_site)
    root = hand_spec.body(cfg.hand.root_body)
    root.pos = cfg.flange_T_root.pos
    root.quat = cfg.flange_T_root.quat
    _attach(flange, root, "hand")
    composed = ComposedSpec(spec, arm_acts, hand_acts, cfg.hand.root_body)
    home = cfg.arm.named_poses["home"]
    add_keys(composed, cfg, {"home": (home, cfg.hand.named_poses["open"]),
                             "pre_shape": (home, cfg.hand.named_poses["pre_shape"])})
    return composed


def floating_hand_spec(cfg: RobotConfig, mount: str = "fixed", physics: PhysicsOptions | None = None) -> ComposedSpec:
    """The hand alone. ``mount``: ``fixed`` (root at the world origin), ``mocap`` (root on a mocap
    body ``hand_mocap`` that the caller moves), or ``free`` (a freejoint ``hand_root`` on the root).

    Keyframes ``open`` and ``pre_shape`` are added (for ``fixed``/``mocap``).
    """
    if mount not in ("fixed", "mocap", "free"):
        raise ValueError(f"mount must be fixed, mocap or free, got {mount!r}")
    physics = physics or default_physics()
    hand_spec, hand_acts = load_hand_spec(cfg.hand, cfg.model_source, cfg.path)
    _check_limits(cfg.path, "hand", cfg.hand.joints, hand_spec, cfg.hand.named_poses)
    spec = mujoco.MjSpec()
    spec.modelname = f"{cfg.hand.name}_floating"
    spec.compiler.autolimits = True
    apply_physics(spec, physics)
    apply_physics(hand_spec, physics)
    parent = spec.worldbody
    mocap_name = None
    if mount == "mocap":
        parent = spec.worldbody.add_body()
        parent.name = mocap_name = "hand_mocap"
        parent.mocap = True
    frame = parent.add_frame()
    root = hand_spec.body(cfg.hand.root_body)
    _attach(frame, root, "hand")
    if mount == "free":
        spec.body(cfg.hand.root_body).add_freejoint().name = "hand_root"
    composed = ComposedSpec(spec, [], hand_acts, cfg.hand.root_body, mocap_name)
    if mount != "free":
        add_keys(composed, cfg, {n: (None, cfg.hand.named_poses[n]) for n in ("open", "pre_shape")})
    return composed


def add_keys(composed: ComposedSpec, cfg: RobotConfig, keys: dict[str, tuple[np.ndarray | None, np.ndarray]]) -> None:
    """Add keyframes ``name -> (arm_q or None, hand_q)`` with matching servo targets (others at qpos0)."""
    spec = composed.spec
    model = compile_spec(spec, cfg.path)  # for the qpos/ctrl layout; meshes are cached for the next compile
    for name, (arm_q, hand_q) in keys.items():
        qpos = model.qpos0.copy()
        ctrl = np.zeros(model.nu)
        if arm_q is not None:
            for joint, value in zip(cfg.arm.joints, arm_q):
                qpos[model.jnt_qposadr[model.joint(joint).id]] = value
            for act, value in zip(composed.arm_actuators, arm_q):
                ctrl[model.actuator(act).id] = value
        for joint, value in zip(cfg.hand.joints, hand_q):
            qpos[model.jnt_qposadr[model.joint(joint).id]] = value
        for act, value in zip(composed.hand_actuators, cfg.hand.actuated_from_joints(hand_q)):
            ctrl[model.actuator(act).id] = value
        key = spec.add_key()
        key.name = name
        key.qpos = qpos
        key.ctrl = ctrl
        if composed.mocap_body is not None:
            key.mpos = np.zeros(3)
            key.mquat = np.array([1.0, 0.0, 0.0, 0.0])


def compile_spec(spec: mujoco.MjSpec, cfg_path: Path | None = None) -> mujoco.MjModel:
    """Compile, turning MuJoCo's errors into :class:`ModelFileError` naming the config."""
    try:
        with quiet_empty_prefix():
            return spec.compile()
    except Exception as exc:
        raise ModelFileError(cfg_path or Path(spec.modelname or "<spec>"), f"MuJoCo failed to compile: {exc}") from exc


@dataclass
class Robot:
    """A validated robot combo: its config plus cached compiled models.

    Build with :func:`load_robot`. ``model`` (arm + hand) and ``hand_model`` (floating hand,
    root fixed at the world origin) are compiled on first use.
    """

    cfg: RobotConfig
    physics: PhysicsOptions = field(default_factory=default_physics)
    _robot: ComposedSpec | None = None
    _robot_model: mujoco.MjModel | None = None
    _hand: ComposedSpec | None = None
    _hand_model: mujoco.MjModel | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    def robot_spec(self) -> ComposedSpec:
        """A fresh arm + hand spec (safe to modify)."""
        return robot_spec(self.cfg, self.physics)

    def hand_spec(self, mount: str = "fixed") -> ComposedSpec:
        """A fresh floating-hand spec (safe to modify)."""
        return floating_hand_spec(self.cfg, mount, self.physics)

    @property
    def model(self) -> mujoco.MjModel:
        """Compiled arm + hand model (cached)."""
        if self._robot_model is None:
            self._robot = self.robot_spec()
            self._robot_model = compile_spec(self._robot.spec, self.cfg.path)
        return self._robot_model

    @property
    def robot_actuators(self) -> tuple[list[str], list[str]]:
        """(arm, hand) actuator names of :attr:`model`, in config order."""
        _ = self.model
        return self._robot.arm_actuators, self._robot.hand_actuators

    @property
    def hand_model(self) -> mujoco.MjModel:
        """Compiled floating-hand model, root fixed at the world origin (cached)."""
        if self._hand_model is None:
            self._hand = self.hand_spec("fixed")
            self._hand_model = compile_spec(self._hand.spec, self.cfg.path)
        return self._hand_model


def load_robot(name_or_path: str | Path, physics: PhysicsOptions | None = None, check: bool = True) -> Robot:
    """Load a robot combo and validate it against its models.

    Args:
        name_or_path: Robot name (``ur10e_shadow``, ``ur5e_leap``) or a YAML path.
        physics: Physics options of the compiled models (default :func:`default_physics`).
        check: Compose and compile both models now, so that every model/config mismatch raises here.

    Raises:
        UnknownRobotError, RobotConfigError, ModelFileError.
    """
    robot = Robot(load_robot_config(name_or_path), physics or default_physics())
    if check:
        _ = robot.model
        _ = robot.hand_model
    return robot
