"""Batched, differentiable forward kinematics in torch (CPU and CUDA, float32 and float64).

The kinematic tree is read from a compiled ``mujoco.MjModel`` (body offsets, joint axes and
anchors, ``qpos0``), and evaluated with MuJoCo's own composition rule, so the results agree with
``mj_kinematics`` to machine precision (checked on thousands of random configurations in
``test/test_kinematics.py``). Supported joints: hinge and slide (all our robots); the floating base
of a hand is an input transform, not a joint.

Shapes: ``B`` batch, ``n`` joints, ``L`` links (bodies), ``P`` attached points.
Outputs are in the *world* frame: for :class:`HandKinematics` the world is wherever
``world_T_root`` puts the hand; for :class:`RobotKinematics` it is the scene world
(arm base at ``world_T_base`` from the robot YAML).

Example::

    robot = load_robot("ur5e_leap")
    hand = HandKinematics(robot, dtype=torch.float64)
    fk = hand.forward(q, world_T_root)          # q (B, 16), world_T_root (B, 4, 4)
    fk.contact_points                            # (B, C, 3) [m], world frame
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mujoco
import numpy as np
import torch

from dex_description.compose import Robot, load_robot
from dex_description.errors import DescriptionError

_HINGE = int(mujoco.mjtJoint.mjJNT_HINGE)
_SLIDE = int(mujoco.mjtJoint.mjJNT_SLIDE)


def _quat_to_mat_np(q: np.ndarray) -> np.ndarray:
    out = np.zeros(9)
    mujoco.mju_quat2Mat(out, np.asarray(q, dtype=np.float64))
    return out.reshape(3, 3)


@dataclass
class FKResult:
    """Link poses of a batch. ``rot`` (B, L, 3, 3), ``pos`` (B, L, 3) [m], world frame."""

    rot: torch.Tensor
    pos: torch.Tensor
    body_names: tuple[str, ...]

    def index(self, name: str) -> int:
        try:
            return self.body_names.index(name)
        except ValueError:
            raise DescriptionError(f"no link '{name}'; links: {', '.join(self.body_names)}") from None

    def body(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(world_R_body (B, 3, 3), world_p_body (B, 3))`` of one link."""
        i = self.index(name)
        return self.rot[:, i], self.pos[:, i]

    def transform(self, body_index: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Points given in link frames -> world. ``body_index`` (P,), ``local`` (P, 3) -> (B, P, 3)."""
        rot = self.rot[:, body_index]  # (B, P, 3, 3)
        return (rot @ local[None, :, :, None]).squeeze(-1) + self.pos[:, body_index]

    def rotate(self, body_index: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Directions given in link frames -> world, (B, P, 3)."""
        return (self.rot[:, body_index] @ local[None, :, :, None]).squeeze(-1)


class KinematicTree:
    """FK of the subtree of one body of a compiled MjModel.

    Args:
        model: Compiled MuJoCo model.
        joint_names: The order of the columns of ``q``; must contain every hinge/slide joint of
            the subtree (and nothing else).
        root_body: Root of the subtree (default: every body of the model).
        device, dtype: Where and in which precision to compute.

    The root's parent is taken as fixed at its pose for ``qpos0`` (true when no joint outside the
    subtree moves it, which is checked).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        joint_names: Sequence[str],
        root_body: str | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.joint_names = tuple(joint_names)
        col = {name: i for i, name in enumerate(self.joint_names)}
        if root_body is None:
            root_id = 0
            bodies = list(range(1, model.nbody))
        else:
            root_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, root_body)
            if root_id < 0:
                raise DescriptionError(f"no body '{root_body}' in model '{model.names[:20]}...'")
            bodies = [b for b in range(model.nbody) if self._in_subtree(model, b, root_id)]
        index = {b: i for i, b in enumerate(bodies)}
        self.body_names = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) or f"body{b}" for b in bodies)
        self.body_ids = tuple(bodies)
        self.parent = [index.get(int(model.body_parentid[b]), -1) for b in bodies]
        seen = set()
        self._joints: list[list[tuple[int, int, int]]] = []  # per body: (joint type, joint slot, q column)
        axes, anchors, qpos0 = [], [], []
        for b in bodies:
            entries = []
            for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]):
                jtype = int(model.jnt_type[j])
                name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
                if jtype not in (_HINGE, _SLIDE):
                    raise DescriptionError(f"joint '{name}' of body '{self.body_names[index[b]]}': only hinge/slide supported")
                if name not in col:
                    raise DescriptionError(f"joint '{name}' moves the tree but is not in joint_names")
                entries.append((jtype, len(axes), col[name]))
                axes.append(model.jnt_axis[j])
                anchors.append(model.jnt_pos[j])
                qpos0.append(model.qpos0[model.jnt_qposadr[j]])
                seen.add(name)
            self._joints.append(entries)
        missing = [n for n in self.joint_names if n not in seen]
        if missing:
            raise DescriptionError(f"joint_names {missing} do not move the subtree of '{root_body}'")
        # fixed pose of the root's parent
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        parent_of_root = int(model.body_parentid[bodies[0]]) if bodies else 0
        self._np = {
            "local_pos": np.array([model.body_pos[b] for b in bodies]).reshape(-1, 3),
            "local_rot": np.array([_quat_to_mat_np(model.body_quat[b]) for b in bodies]).reshape(-1, 3, 3),
            "axis": np.array(axes).reshape(-1, 3),
            "anchor": np.array(anchors).reshape(-1, 3),
            "qpos0": np.array(qpos0),
            "base_rot": data.xmat[parent_of_root].reshape(3, 3).copy(),
            "base_pos": data.xpos[parent_of_root].copy(),
        }
        self.device = torch.device(device)
        self.dtype = dtype
        self._make_tensors()

    @staticmethod
    def _in_subtree(model: mujoco.MjModel, body: int, root: int) -> bool:
        while body > 0:
            if body == root:
                return True
            body = int(model.body_parentid[body])
        return root == 0

    def _make_tensors(self) -> None:
        t = {k: torch.as_tensor(v, dtype=self.dtype, device=self.device) for k, v in self._np.items()}
        axis = t["axis"]
        x, y, z = axis.unbind(-1) if axis.numel() else (axis[:, 0],) * 3
        zero = torch.zeros_like(x)
        skew = torch.stack(
            [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2
        ) if axis.numel() else axis.new_zeros(0, 3, 3)
        t["skew"] = skew
        t["skew2"] = skew @ skew
        self._t = t

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "KinematicTree":
        """Move to another device/precision (in place); returns self."""
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        self._make_tensors()
        return self

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def forward(self, q: torch.Tensor, world_T_base: torch.Tensor | None = None) -> FKResult:
        """Link poses for joint positions ``q`` (B, n) [rad or m].

        Args:
            q: (B, n) joint positions in ``joint_names`` order.
            world_T_base: optional (B, 4, 4) transform applied on top of the model's world frame
                (for a floating hand whose model has its root at the origin, this is ``world_T_root``).
        """
        t = self._t
        if q.ndim != 2 or q.shape[1] != self.n_joints:
            raise ValueError(f"q must be (B, {self.n_joints}), got {tuple(q.shape)}")
        batch = q.shape[0]
        base_rot = t["base_rot"].expand(batch, 3, 3)
        base_pos = t["base_pos"].expand(batch, 3)
        if world_T_base is not None:
            if world_T_base.shape != (batch, 4, 4):
                raise ValueError(f"world_T_base must be ({batch}, 4, 4), got {tuple(world_T_base.shape)}")
            w_rot, w_pos = world_T_base[:, :3, :3], world_T_base[:, :3, 3]
            base_pos = (w_rot @ base_pos[..., None]).squeeze(-1) + w_pos
            base_rot = w_rot @ base_rot
        rots: list[torch.Tensor] = []
        poss: list[torch.Tensor] = []
        eye = torch.eye(3, dtype=q.dtype, device=q.device)
        for i, parent in enumerate(self.parent):
            p_rot, p_pos = (base_rot, base_pos) if parent < 0 else (rots[parent], poss[parent])
            rot = p_rot @ t["local_rot"][i]
            pos = p_pos + (p_rot @ t["local_pos"][i])
            for jtype, slot, column in self._joints[i]:
                angle = q[:, column] - t["qpos0"][slot]
                if jtype == _HINGE:
                    s = torch.sin(angle)[:, None, None]
                    c = torch.cos(angle)[:, None, None]
                    local = eye + s * t["skew"][slot] + (1 - c) * t["skew2"][slot]
                    anchor = pos + (rot @ t["anchor"][slot])
                    rot = rot @ local
                    pos = anchor - (rot @ t["anchor"][slot])
                else:
                    pos = pos + (rot @ t["axis"][slot]) * angle[:, None]
            rots.append(rot)
            poss.append(pos)
        return FKResult(torch.stack(rots, 1), torch.stack(poss, 1), self.body_names)


@dataclass
class AttachedPoints:
    """Points fixed to links: ``body_index`` (P,) into the tree's links, ``local`` (P, 3) [m] in
    the link frames, optional ``normals`` (P, 3) and ``radii`` (P,) [m], ``group`` (P,) labels."""

    body_index: torch.Tensor
    local: torch.Tensor
    normals: torch.Tensor | None = None
    radii: torch.Tensor | None = None
    group: tuple[str, ...] = ()

    def to(self, device, dtype) -> "AttachedPoints":
        def mv(x):
            return None if x is None else x.to(device=device, dtype=dtype)

        return AttachedPoints(self.body_index.to(device), mv(self.local), mv(self.normals), mv(self.radii), self.group)

    @staticmethod
    def empty(device, dtype) -> "AttachedPoints":
        z = torch.zeros(0, 3, device=device, dtype=dtype)
        return AttachedPoints(torch.zeros(0, dtype=torch.long, device=device), z, z.clone(), torch.zeros(0, device=device, dtype=dtype))


def _sphere_points(paths, body_names, device, dtype) -> AttachedPoints:
    from dex_description.spheres import load_spheres

    idx, centres, radii, groups = [], [], [], []
    for path in paths:
        if path is None:
            continue
        if not path.is_file():
            raise DescriptionError(f"{path}: collision-sphere file missing (generate with `dexgrasp-description fit-spheres`)")
        for body, (c, r) in load_spheres(path).items():
            if body not in body_names:
                continue  # a body of the other model part (e.g. arm spheres in a hand-only tree)
            for ci, ri in zip(np.asarray(c), np.asarray(r)):
                idx.append(body_names.index(body))
                centres.append(ci)
                radii.append(ri)
                groups.append(body)
    if not idx:
        return AttachedPoints.empty(device, dtype)
    return AttachedPoints(
        torch.as_tensor(idx, dtype=torch.long, device=device),
        torch.as_tensor(np.array(centres), dtype=dtype, device=device),
        None,
        torch.as_tensor(np.array(radii), dtype=dtype, device=device),
        tuple(groups),
    )


def _contact_points(hand_cfg, body_names, device, dtype) -> AttachedPoints:
    idx, pts, nrm, groups = [], [], [], []
    for cp in hand_cfg.contact_points:
        for p, n in zip(cp.points, cp.normals):
            idx.append(body_names.index(cp.body))
            pts.append(p)
            nrm.append(n)
            groups.append(cp.finger)
    if not idx:
        return AttachedPoints.empty(device, dtype)
    return AttachedPoints(
        torch.as_tensor(idx, dtype=torch.long, device=device),
        torch.as_tensor(np.array(pts), dtype=dtype, device=device),
        torch.as_tensor(np.array(nrm), dtype=dtype, device=device),
        None,
        tuple(groups),
    )


@dataclass
class HandFK:
    """Everything a grasp optimiser needs from one FK pass, world frame.

    Attributes:
        links: Link poses.
        contact_points: (B, C, 3) candidate contact points [m].
        contact_normals: (B, C, 3) their outward unit normals.
        sphere_centers: (B, S, 3) collision-sphere centres [m].
        sphere_radii: (S,) radii [m].
    """

    links: FKResult
    contact_points: torch.Tensor
    contact_normals: torch.Tensor
    sphere_centers: torch.Tensor
    sphere_radii: torch.Tensor


class _RobotPart:
    """Shared by :class:`HandKinematics` and :class:`RobotKinematics`: a tree over some joints of a
    robot's model, its joint limits, and attached points rebuilt on every device/dtype change."""

    def __init__(self, robot: Robot | str, model: mujoco.MjModel, joints: Sequence[str], root_body: str,
                 device, dtype, with_spheres: bool):
        self.robot = load_robot(robot, check=False) if isinstance(robot, str) else robot
        self.joint_names = tuple(joints)
        self.tree = KinematicTree(model, self.joint_names, root_body, device, dtype)
        ranges = np.array([model.jnt_range[model.joint(j).id] for j in self.joint_names])
        self._lower_np, self._upper_np = ranges[:, 0], ranges[:, 1]
        self._with_spheres = with_spheres

    def _build(self, device, dtype) -> None:
        self.device, self.dtype = torch.device(device), dtype
        self.lower = torch.as_tensor(self._lower_np, dtype=dtype, device=device)
        self.upper = torch.as_tensor(self._upper_np, dtype=dtype, device=device)
        self._build_points(device, dtype)

    def _build_points(self, device, dtype) -> None:
        raise NotImplementedError

    def to(self, device=None, dtype=None):
        """Move to another device/precision (in place); returns self."""
        device = device or self.device
        dtype = dtype or self.dtype
        self.tree.to(device, dtype)
        self._build(device, dtype)
        return self

    @property
    def n_joints(self) -> int:
        return self.tree.n_joints


class HandKinematics(_RobotPart):
    """Floating hand: ``world_T_root`` (B, 4, 4) + hand joints (B, n) -> links, contacts, spheres.

    Args:
        robot: A :class:`~dex_description.compose.Robot` or a robot name; its hand is used.
        device, dtype: Where and in which precision to compute.
        with_spheres: Load the collision spheres (needs the sphere file of the hand).
    """

    def __init__(self, robot: Robot | str, device="cpu", dtype=torch.float32, with_spheres: bool = True):
        robot = load_robot(robot, check=False) if isinstance(robot, str) else robot
        self.cfg = robot.cfg.hand
        super().__init__(robot, robot.hand_model, self.cfg.joints, self.cfg.root_body, device, dtype, with_spheres)
        self._build(device, dtype)

    def _build_points(self, device, dtype) -> None:
        names = self.tree.body_names
        self.contacts = _contact_points(self.cfg, names, device, dtype)
        self.spheres = (
            _sphere_points([self.cfg.spheres], names, device, dtype) if self._with_spheres else AttachedPoints.empty(device, dtype)
        )
        a = self.cfg.actuation_matrix()
        self._actuation = torch.as_tensor(a, dtype=dtype, device=device)
        self._split = torch.as_tensor(a.T / np.maximum(a.sum(axis=1), 1.0)[None, :], dtype=dtype, device=device)

    def joints_from_actuated(self, u: torch.Tensor) -> torch.Tensor:
        """(B, n_act) actuator values -> (B, n) joints; a coupled sum is split equally (Shadow J1 = J2 = J0 / 2)."""
        return u @ self._split.T

    def actuated_from_joints(self, q: torch.Tensor) -> torch.Tensor:
        """(B, n) joints -> (B, n_act) actuator values (coupled: the sum)."""
        return q @ self._actuation.T

    def forward(self, q: torch.Tensor, world_T_root: torch.Tensor | None = None) -> HandFK:
        """FK of the floating hand. ``q`` (B, n) [rad]; ``world_T_root`` (B, 4, 4) or None (root at origin)."""
        links = self.tree.forward(q, world_T_root)
        c = self.contacts
        s = self.spheres
        return HandFK(
            links=links,
            contact_points=links.transform(c.body_index, c.local),
            contact_normals=links.rotate(c.body_index, c.normals),
            sphere_centers=links.transform(s.body_index, s.local),
            sphere_radii=s.radii,
        )


class RobotKinematics(_RobotPart):
    """Arm + hand: ``q`` = arm joints then hand joints, (B, 6 + n_hand) -> links, flange, spheres (world).

    Args:
        robot: A :class:`~dex_description.compose.Robot` or a robot name.
        device, dtype: Where and in which precision to compute.
        with_spheres: Load the arm's and hand's collision spheres.
    """

    def __init__(self, robot: Robot | str, device="cpu", dtype=torch.float32, with_spheres: bool = True):
        robot = load_robot(robot, check=False) if isinstance(robot, str) else robot
        self.cfg = robot.cfg
        model = robot.model
        super().__init__(robot, model, tuple(self.cfg.arm.joints) + tuple(self.cfg.hand.joints), self.cfg.arm.base_body,
                         device, dtype, with_spheres)
        site = model.site(self.cfg.arm.flange_site)
        self._flange_body = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, int(model.site_bodyid[site.id]))
        self._flange_local = (_quat_to_mat_np(model.site_quat[site.id]), model.site_pos[site.id].copy())
        self._build(device, dtype)

    def _build_points(self, device, dtype) -> None:
        self.spheres = (
            _sphere_points([self.cfg.arm.spheres, self.cfg.hand.spheres], self.tree.body_names, device, dtype)
            if self._with_spheres
            else AttachedPoints.empty(device, dtype)
        )
        self._flange_rot = torch.as_tensor(self._flange_local[0], dtype=dtype, device=device)
        self._flange_pos = torch.as_tensor(self._flange_local[1], dtype=dtype, device=device)

    def forward(self, q: torch.Tensor) -> FKResult:
        """Link poses (world) for ``q`` (B, 6 + n_hand)."""
        return self.tree.forward(q)

    def flange(self, links: FKResult) -> tuple[torch.Tensor, torch.Tensor]:
        """``(world_R_flange (B, 3, 3), world_p_flange (B, 3))`` (tool0)."""
        rot, pos = links.body(self._flange_body)
        return rot @ self._flange_rot, pos + (rot @ self._flange_pos)

    def sphere_centers(self, links: FKResult) -> torch.Tensor:
        """(B, S, 3) collision-sphere centres [m], world; radii in ``self.spheres.radii``."""
        return links.transform(self.spheres.body_index, self.spheres.local)
