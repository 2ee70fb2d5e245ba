"""The cuRobo (GPU) backend: the same planner interface on cuRobo's ``MotionGen``.

cuRobo (NVIDIA, https://curobo.org) is an optional runtime dependency, never vendored or copied:
its v1 licence is NVIDIA's non-commercial licence, and it needs CUDA. It is imported lazily, only
when ``backend: curobo`` is selected; without it :class:`CuroboPlanner` raises
:class:`~dex_planning.errors.BackendUnavailableError` saying what to do.

Written against cuRobo v1's documented API (``curobo.wrap.reacher.motion_gen``):
``MotionGenConfig.load_from_robot_config(robot_cfg, world_model, tensor_args, ...)``,
``MotionGen.warmup()``, ``MotionGen.plan_single(JointState, Pose, MotionGenPlanConfig)``,
``MotionGenResult.success / .status / .get_interpolated_plan() / .interpolation_dt``,
``MotionGen.update_world(WorldConfig)``, ``MotionGen.update_locked_joints(lock_joints, robot_cfg)``.

What this module builds from our own data (pure functions, tested without cuRobo):

* :func:`urdf_from_model`: a kinematics-only URDF of the composed arm + hand, written from the
  compiled ``MjModel`` (links = MuJoCo bodies, so link frames = body frames), plus a ``dex_flange``
  link at the flange site (cuRobo's ``ee_link``). cuRobo needs a URDF; ours are MJCF only.
* :func:`robot_cfg_dict`: cuRobo's robot configuration: our collision spheres (already in MuJoCo
  body frames), the hand joints locked at the pre-shape, velocity limits in the URDF and
  acceleration limits in ``cspace``, self-collision ignore lists mirroring MuJoCo's
  parent/child filter.
* :func:`world_cfg_dict`: the table and boxes as cuboids, the obstacle cloud voxelised into
  cuboids (``cloud_voxel_size``).
* :func:`start_goal_arrays`: the start joint vector and the goal flange pose (position,
  quaternion wxyz) in the robot base frame, as the arrays cuRobo's ``JointState``/``Pose`` take.

Typed rejection reasons are decided by the CPU model before cuRobo runs (closed-form IK within
limits -> ``no_ik``, every solution colliding -> ``collision_at_goal``), so both backends report the
same reasons; cuRobo's trajectory is then re-checked densely by the CPU collision model and the
limit check (an independent check of cuRobo's sphere-based result).

Status: the code here ran only against a fake ``curobo`` in the tests (the machines this was
written on have no GPU and cuRobo is not on PyPI); the conversion helpers are tested for real.
"""

from __future__ import annotations

import importlib
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np

from dex_description.compose import Robot
from dex_description.spheres import load_spheres
from dex_planning.config import PlannerConfig
from dex_planning.errors import BackendUnavailableError
from dex_planning.interface import REASON_PLANNER_TIMEOUT, PlanAttempt, PlanStats, Trajectory
from dex_planning.planner import ArmPlanner
from dex_planning.scene import PlanningScene
from dex_planning.timing import limit_ratios

CUROBO_MISSING = ("cuRobo backend selected but `curobo` is not importable: install cuRobo "
                  "(https://curobo.org/get_started/1_install_instructions.html, NVIDIA's licence; needs "
                  "CUDA and a matching torch) on a CUDA machine, or set backend: cpu")

FLANGE_LINK = "dex_flange"


def import_curobo():
    """Import the cuRobo modules the backend uses.

    Raises:
        BackendUnavailableError: ``curobo`` (or torch CUDA) is not available, with the fix.
    """
    try:
        importlib.import_module("curobo")
        mods = {
            "base": importlib.import_module("curobo.types.base"),
            "math": importlib.import_module("curobo.types.math"),
            "robot": importlib.import_module("curobo.types.robot"),
            "geom": importlib.import_module("curobo.geom.types"),
            "motion_gen": importlib.import_module("curobo.wrap.reacher.motion_gen"),
        }
    except ImportError as exc:
        raise BackendUnavailableError(f"{CUROBO_MISSING} ({exc})") from exc
    return mods


# ------------------------------------------------------------------------------- conversions


def _fmt(v) -> str:
    return " ".join(f"{float(x):.9g}" for x in v)


def _rpy(R: np.ndarray) -> np.ndarray:
    """URDF roll-pitch-yaw (fixed-axis X then Y then Z: ``R = Rz(y) Ry(p) Rx(r)``) of a rotation."""
    sy = -R[2, 0]
    if abs(sy) < 1 - 1e-9:
        pitch = np.arcsin(np.clip(sy, -1, 1))
        roll = np.arctan2(R[2, 1], R[2, 2])
        yaw = np.arctan2(R[1, 0], R[0, 0])
    else:  # gimbal lock: put everything in yaw
        pitch = np.pi / 2 * np.sign(sy)
        roll = 0.0
        yaw = np.arctan2(-R[0, 1], R[1, 1])
    return np.array([roll, pitch, yaw])


def urdf_from_model(robot: Robot) -> str:
    """A kinematics-only URDF (string) of the composed arm + hand, from the compiled MjModel.

    Links are named like the MuJoCo bodies (link frame = body frame); each hinge becomes a
    ``revolute`` joint named like the MuJoCo joint (limits from the model, velocity limits from the
    robot YAML), bodies without joints hang on ``fixed`` joints, and a ``dex_flange`` link sits at
    the flange site. A joint anchor away from the body origin gets an intermediate link.
    The root link is the arm's base body (the world is left out: cuRobo plans in the base frame).
    """
    m = robot.model
    cfg = robot.cfg
    base = m.body(cfg.arm.base_body).id
    vel = dict(zip(cfg.arm.joints, cfg.arm.velocity_limits))
    vel.update(zip(cfg.hand.joints, cfg.hand.velocity_limits))
    root = ET.Element("robot", name=cfg.name)
    ET.SubElement(root, "link", name=m.body(base).name)

    def subtree(b: int) -> bool:
        a = b
        while a > 0:
            if a == base:
                return True
            a = int(m.body_parentid[a])
        return False

    for b in range(m.nbody):
        if b == base or not subtree(b):
            continue
        name, parent = m.body(b).name, m.body(int(m.body_parentid[b])).name
        R = np.zeros(9)
        mujoco.mju_quat2Mat(R, m.body_quat[b])
        R = R.reshape(3, 3)
        pos = m.body_pos[b]
        njnt = int(m.body_jntnum[b])
        if njnt > 1:
            raise BackendUnavailableError(f"body '{name}' has {njnt} joints: not expressible in URDF here")
        if njnt == 0:
            j = ET.SubElement(root, "joint", name=f"{name}_fixed", type="fixed")
            ET.SubElement(j, "parent", link=parent)
            ET.SubElement(j, "child", link=name)
            ET.SubElement(j, "origin", xyz=_fmt(pos), rpy=_fmt(_rpy(R)))
            ET.SubElement(root, "link", name=name)
            continue
        jid = int(m.body_jntadr[b])
        jname = m.joint(jid).name
        anchor = m.jnt_pos[jid]
        child = name if not np.any(anchor) else f"{name}__axis"
        j = ET.SubElement(root, "joint", name=jname, type="revolute")
        ET.SubElement(j, "parent", link=parent)
        ET.SubElement(j, "child", link=child)
        ET.SubElement(j, "origin", xyz=_fmt(pos + R @ anchor), rpy=_fmt(_rpy(R)))
        ET.SubElement(j, "axis", xyz=_fmt(m.jnt_axis[jid]))
        lo, hi = m.jnt_range[jid]
        ET.SubElement(j, "limit", lower=f"{lo:.9g}", upper=f"{hi:.9g}", effort="1000",
                      velocity=f"{float(vel.get(jname, 1.0)):.9g}")
        ET.SubElement(root, "link", name=child)
        if child != name:
            f = ET.SubElement(root, "joint", name=f"{name}__anchor", type="fixed")
            ET.SubElement(f, "parent", link=child)
            ET.SubElement(f, "child", link=name)
            ET.SubElement(f, "origin", xyz=_fmt(-anchor), rpy="0 0 0")
            ET.SubElement(root, "link", name=name)
    site = m.site(cfg.arm.flange_site).id
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, m.site_quat[site])
    j = ET.SubElement(root, "joint", name=f"{FLANGE_LINK}_fixed", type="fixed")
    ET.SubElement(j, "parent", link=m.body(int(m.site_bodyid[site])).name)
    ET.SubElement(j, "child", link=FLANGE_LINK)
    ET.SubElement(j, "origin", xyz=_fmt(m.site_pos[site]), rpy=_fmt(_rpy(R.reshape(3, 3))))
    ET.SubElement(root, "link", name=FLANGE_LINK)
    ET.indent(root)
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _robot_bodies(robot: Robot) -> list[int]:
    m = robot.model
    base = m.body(robot.cfg.arm.base_body).id
    out = []
    for b in range(m.nbody):
        a = b
        while a > 0 and a != base:
            a = int(m.body_parentid[a])
        if a == base:
            out.append(b)
    return out


def self_collision_ignore(robot: Robot, links: list[str]) -> dict[str, list[str]]:
    """Pairs cuRobo must not check, mirroring MuJoCo: same weld body, weld parent/child, the
    model's ``<exclude>`` pairs, and hand vs hand (the hand is locked at a proposal's shape)."""
    m = robot.model
    ids = {name: m.body(name).id for name in links}
    hand_root = m.body(robot.cfg.hand.root_body).id

    def in_hand(b: int) -> bool:
        while b > 0:
            if b == hand_root:
                return True
            b = int(m.body_parentid[b])
        return False

    excluded = set()
    for i in range(m.nexclude):
        sig = int(m.exclude_signature[i])
        excluded |= {(sig >> 16, sig & 0xFFFF), (sig & 0xFFFF, sig >> 16)}
    weld, parent = m.body_weldid, m.body_parentid
    out: dict[str, list[str]] = {}
    for i, a in enumerate(links):
        for b in links[i + 1:]:
            ba, bb = ids[a], ids[b]
            wa, wb = int(weld[ba]), int(weld[bb])
            skip = (wa == wb or (ba, bb) in excluded or (in_hand(ba) and in_hand(bb))
                    or (wa and wb and (wa == int(weld[parent[wb]]) or wb == int(weld[parent[wa]]))))
            if skip:
                out.setdefault(a, []).append(b)
    return out


def robot_cfg_dict(robot: Robot, urdf_path: str | Path, hand_q: np.ndarray, sphere_buffer: float = 0.0,
                   acceleration_scale: float = 1.0) -> dict:
    """cuRobo's ``robot_cfg`` dictionary (the ``kinematics`` section of its robot YAML).

    Args:
        urdf_path: The file :func:`urdf_from_model` was written to.
        hand_q: (n_hand,) hand joints to lock [rad] (the pre-grasp shape).
        sphere_buffer: ``collision_sphere_buffer`` [m] added to every sphere.
    """
    cfg = robot.cfg
    spheres = {}
    for path in (cfg.arm.spheres, cfg.hand.spheres):
        if path is None:
            continue
        for body, (centres, radii) in load_spheres(path).items():
            spheres[body] = [{"center": [float(x) for x in c], "radius": float(r)}
                             for c, r in zip(np.asarray(centres), np.asarray(radii))]
    links = [robot.model.body(b).name for b in _robot_bodies(robot)]
    collision_links = [name for name in links if name in spheres]
    joints = list(cfg.arm.joints) + list(cfg.hand.joints)
    home = list(cfg.arm.named_poses["home"]) + [float(x) for x in hand_q]
    accel = list(np.asarray(cfg.arm.acceleration_limits) * acceleration_scale) + [50.0] * len(cfg.hand.joints)
    return {
        "kinematics": {
            "urdf_path": str(urdf_path),
            "asset_root_path": "",
            "base_link": cfg.arm.base_body,
            "ee_link": FLANGE_LINK,
            "link_names": None,
            "lock_joints": {j: float(v) for j, v in zip(cfg.hand.joints, hand_q)},
            "extra_links": None,
            "collision_link_names": collision_links,
            "collision_spheres": {k: spheres[k] for k in collision_links},
            "collision_sphere_buffer": float(sphere_buffer),
            "extra_collision_spheres": {},
            "self_collision_ignore": self_collision_ignore(robot, collision_links),
            "self_collision_buffer": {k: 0.0 for k in collision_links},
            "use_global_cumul": True,
            "mesh_link_names": None,
            "cspace": {
                "joint_names": joints,
                "retract_config": [float(x) for x in home],
                "null_space_weight": [1.0] * len(joints),
                "cspace_distance_weight": [1.0] * len(joints),
                "max_jerk": 500.0,
                "max_acceleration": [float(a) for a in accel],
            },
        }
    }


def _pose7(T: np.ndarray) -> list[float]:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(T[:3, :3]).reshape(9))
    return [float(x) for x in T[:3, 3]] + [float(x) for x in q]


def voxelize(cloud: np.ndarray, voxel: float) -> np.ndarray:
    """Centres (V, 3) of the occupied cubic voxels of edge ``voxel`` [m] (grid aligned at the origin)."""
    if cloud is None or len(cloud) == 0:
        return np.zeros((0, 3))
    keys = np.unique(np.floor(np.asarray(cloud) / voxel).astype(np.int64), axis=0)
    return (keys + 0.5) * voxel


def world_cfg_dict(scene: PlanningScene, base_T_world: np.ndarray, voxel: float) -> dict:
    """cuRobo's world dictionary (robot base frame): boxes and the voxelised cloud as cuboids."""
    cuboids = {}
    for box in scene.boxes:
        cuboids[box.name] = {"dims": [float(x) for x in box.size], "pose": _pose7(base_T_world @ box.world_T_box)}
    if scene.cloud is not None:
        for k, c in enumerate(voxelize(scene.cloud, voxel)):
            T = np.eye(4)
            T[:3, 3] = c
            cuboids[f"cloud_{k}"] = {"dims": [voxel] * 3, "pose": _pose7(base_T_world @ T)}
    return {"cuboid": cuboids}


def start_goal_arrays(start_q: np.ndarray, world_T_flange: np.ndarray, base_T_world: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(start (1, 6), goal position (1, 3), goal quaternion wxyz (1, 4))`` for cuRobo's
    ``JointState.from_position`` and ``Pose`` (robot base frame)."""
    p = _pose7(base_T_world @ np.asarray(world_T_flange, dtype=np.float64))
    return (np.asarray(start_q, dtype=np.float32).reshape(1, -1), np.asarray([p[:3]], dtype=np.float32),
            np.asarray([p[3:]], dtype=np.float32))


# ------------------------------------------------------------------------------- the backend


class CuroboPlanner(ArmPlanner):
    """cuRobo motion generation behind the :class:`~dex_planning.planner.ArmPlanner` interface.

    Raises:
        BackendUnavailableError: cuRobo is not importable (message says what to do).
    """

    backend = "curobo"

    def __init__(self, robot: Robot, cfg: PlannerConfig | None = None, work_dir: str | Path | None = None):
        super().__init__(robot, cfg)
        self.cu = import_curobo()  # first: fail fast and clearly when cuRobo is absent
        import torch

        from dex_planning.cpu import CpuPlanner

        self.cpu = CpuPlanner(robot, self.cfg)  # typed reasons, goal checks and the dense re-check
        self.base_T_world = np.linalg.inv(robot.cfg.world_T_base.matrix())
        cc = self.cfg.curobo
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="dex_planning_curobo_"))
        self.urdf_path = self.work_dir / f"{robot.cfg.name}.urdf"
        self.urdf_path.write_text(urdf_from_model(robot))
        self.hand_q = np.asarray(robot.cfg.hand.named_poses["pre_shape"], dtype=np.float64)
        self.robot_dict = robot_cfg_dict(robot, self.urdf_path, self.hand_q,
                                         acceleration_scale=self.cfg.timing.acceleration_scale)
        self.torch = torch
        self.tensor_args = self.cu["base"].TensorDeviceType(device=torch.device(cc.device))
        world = self.cu["geom"].WorldConfig.from_dict(world_cfg_dict(PlanningScene(), self.base_T_world, cc.cloud_voxel_size))
        mg_cfg = self.cu["motion_gen"].MotionGenConfig.load_from_robot_config(
            self.robot_dict, world, self.tensor_args,
            num_ik_seeds=cc.num_ik_seeds, num_trajopt_seeds=cc.num_trajopt_seeds, num_graph_seeds=cc.num_graph_seeds,
            interpolation_dt=cc.interpolation_dt, collision_activation_distance=cc.collision_activation_distance,
            collision_cache={"obb": 4096}, velocity_scale=self.cfg.timing.velocity_scale,
            acceleration_scale=self.cfg.timing.acceleration_scale,
        )
        self.motion_gen = self.cu["motion_gen"].MotionGen(mg_cfg)
        self.motion_gen.warmup()

    def set_scene(self, scene: PlanningScene) -> None:
        self.cpu.set_scene(scene)
        world = world_cfg_dict(scene, self.base_T_world, self.cfg.curobo.cloud_voxel_size)
        self.motion_gen.update_world(self.cu["geom"].WorldConfig.from_dict(world))

    def flange_pose(self, q):
        return self.cpu.flange_pose(q)

    def start_collisions(self, start_q, start_hand_q):
        return self.cpu.start_collisions(start_q, start_hand_q)

    def preshape_collisions(self, start_q, hand_from, hand_to):
        return self.cpu.preshape_collisions(start_q, hand_from, hand_to)

    def plan_to_pose(self, start_q, world_T_flange, hand_q, deadline) -> PlanAttempt:
        stats = PlanStats()
        t0 = time.monotonic()
        # Typed reasons from the CPU model (closed-form IK, goal collision), same as the CPU backend.
        pre = self.cpu.goal_states(start_q, world_T_flange, hand_q, stats)
        if isinstance(pre, PlanAttempt):
            return pre
        if np.any(np.abs(hand_q - self.hand_q) > 1e-9):
            self.hand_q = np.asarray(hand_q, dtype=np.float64).copy()
            self.motion_gen.update_locked_joints({j: float(v) for j, v in zip(self.robot.cfg.hand.joints, hand_q)},
                                                 self.robot_dict)
        start, pos, quat = start_goal_arrays(start_q, world_T_flange, self.base_T_world)
        targs = {"device": self.tensor_args.device, "dtype": self.tensor_args.dtype}
        js = self.cu["robot"].JointState.from_position(self.torch.as_tensor(start, **targs),
                                                      joint_names=list(self.arm_joints))
        goal = self.cu["math"].Pose(position=self.torch.as_tensor(pos, **targs),
                                    quaternion=self.torch.as_tensor(quat, **targs))
        plan_cfg = self.cu["motion_gen"].MotionGenPlanConfig(
            max_attempts=self.cfg.curobo.max_attempts, timeout=max(0.01, deadline - time.monotonic()))
        t1 = time.monotonic()
        result = self.motion_gen.plan_single(js, goal, plan_cfg)
        stats.search_s = time.monotonic() - t1
        if not bool(result.success.view(-1)[0].item()):
            return PlanAttempt(False, REASON_PLANNER_TIMEOUT, f"cuRobo: {result.status}", stats=stats)
        plan = result.get_interpolated_plan()
        dt = float(result.interpolation_dt)
        names = list(getattr(plan, "joint_names", None) or self.arm_joints)
        order = [names.index(j) for j in self.arm_joints]
        q = plan.position.detach().cpu().numpy().reshape(-1, len(names))[:, order].astype(np.float64)
        qd = plan.velocity.detach().cpu().numpy().reshape(-1, len(names))[:, order].astype(np.float64)
        qdd = plan.acceleration.detach().cpu().numpy().reshape(-1, len(names))[:, order].astype(np.float64)
        traj = Trajectory(self.arm_joints, np.arange(len(q)) * dt, q, qd, qdd)
        t2 = time.monotonic()
        self.cpu.collision.set_hand(hand_q)
        bad = self.cpu._dense_collision(traj)
        vr, ar = limit_ratios(qd, qdd, self.robot.cfg.arm.velocity_limits, self.robot.cfg.arm.acceleration_limits)
        stats.check_s = time.monotonic() - t2
        stats.max_vel_ratio, stats.max_acc_ratio = vr, ar
        stats.path_length = float(np.linalg.norm(np.diff(q, axis=0), axis=1).sum())
        stats.n_waypoints = len(q)
        if bad is not None:
            return PlanAttempt(False, REASON_PLANNER_TIMEOUT,
                               f"cuRobo's trajectory fails the dense re-check at t = {traj.t[bad]:.3f} s", stats=stats)
        if vr > 1.0 or ar > 1.0:
            return PlanAttempt(False, REASON_PLANNER_TIMEOUT,
                               f"cuRobo's trajectory exceeds the limits (|qd|/vlim {vr:.3f}, |qdd|/alim {ar:.3f})",
                               stats=stats)
        stats.dense_check_ok = True
        stats.ik_s = stats.ik_s or (t1 - t0)
        return PlanAttempt(True, "", "ok", traj, q[-1].copy(), q, stats)
