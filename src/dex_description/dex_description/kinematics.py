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

import weakref
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
        """Points given in link frames -> world. ``body_index`` (P,), ``local`` (P, 3) -> (B, P, 3).

        One dense product ``[R_l | p_l]_l (B, 3, 4L) @ M (4L, P)`` with ``M`` holding each point's
        homogeneous coordinates in its link's rows: cheaper forward and backward than gathering a
        (B, P, 3, 3) stack of rotations (and its scatter in the backward pass).
        """
        return self._dense(body_index, local, homogeneous=True)

    def rotate(self, body_index: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Directions given in link frames -> world, (B, P, 3)."""
        return self._dense(body_index, local, homogeneous=False)

    def _dense(self, body_index: torch.Tensor, local: torch.Tensor, homogeneous: bool) -> torch.Tensor:
        batch, n_links = self.rot.shape[:2]
        cols = 4 if homogeneous else 3
        sel = _selector(body_index, local, n_links, homogeneous)
        frames = torch.cat([self.rot, self.pos[..., None]], -1) if homogeneous else self.rot  # (B, L, 3, cols)
        frames = frames.permute(0, 2, 1, 3).reshape(batch, 3, n_links * cols)
        return (frames @ sel.reshape(n_links * cols, local.shape[0])).transpose(1, 2)


_SELECTORS: dict = {}


def _selector(body_index: torch.Tensor, local: torch.Tensor, n_links: int, homogeneous: bool) -> torch.Tensor:
    """``M`` (L, 4 or 3, P) of :meth:`FKResult.transform`: column ``p`` holds point ``p``'s (homogeneous)
    coordinates in the rows of its link. Cached per (points, links) while the point tensors live
    (attached points are built once per device/dtype)."""
    key = (id(body_index), id(local), body_index._version, local._version, n_links, homogeneous, local.dtype, local.device)
    hit = _SELECTORS.get(key)
    if hit is not None and hit[0]() is body_index and hit[1]() is local:
        return hit[2]
    n_pts = local.shape[0]
    cols = 4 if homogeneous else 3
    sel = local.new_zeros(n_links, cols, n_pts)
    coords = torch.cat([local, local.new_ones(n_pts, 1)], 1) if homogeneous else local
    sel[body_index, :, torch.arange(n_pts, device=local.device)] = coords.detach()
    if len(_SELECTORS) > 256:
        _SELECTORS.clear()
    _SELECTORS[key] = (weakref.ref(body_index), weakref.ref(local), sel)
    return sel


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
        """Constants of the vectorised FK (see :meth:`forward`), in level order."""
        np_ = self._np
        n_bodies = len(self.parent)
        # every joint factor is ``I + f1(angle) A + f2(angle) B`` (4 x 4): a hinge about ``axis``
        # through ``anchor`` has A = [[S, -S c], [0, 0]], B = [[S^2, -S^2 c], [0, 0]] (S = skew(axis),
        # c = anchor; f1 = sin, f2 = 1 - cos: Rodrigues conjugated by the anchor translation), a
        # slide has A = [[0, axis], [0, 0]], B = 0 (f1 = displacement)
        n_j = len(np_["qpos0"])
        a_mat = np.zeros((n_j, 4, 4))
        b_mat = np.zeros((n_j, 4, 4))
        hinge = np.zeros(n_j, dtype=bool)
        col = np.zeros(n_j, dtype=np.int64)
        first = np.full(n_bodies, n_j, dtype=np.int64)  # body -> its first joint slot (n_j = none)
        extra: list[tuple[int, int]] = []  # (body, slot) of second and later joints of a body
        for i, entries in enumerate(self._joints):
            for k, (jtype, slot, column) in enumerate(entries):
                col[slot] = column
                axis, anchor = np_["axis"][slot], np_["anchor"][slot]
                if jtype == _HINGE:
                    hinge[slot] = True
                    sk = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
                    sk2 = sk @ sk
                    a_mat[slot, :3, :3], a_mat[slot, :3, 3] = sk, -sk @ anchor
                    b_mat[slot, :3, :3], b_mat[slot, :3, 3] = sk2, -sk2 @ anchor
                else:
                    a_mat[slot, :3, 3] = axis
                if k == 0:
                    first[i] = slot
                else:
                    extra.append((i, slot))
        fixed = np.tile(np.eye(4), (n_bodies, 1, 1))
        fixed[:, :3, :3] = np_["local_rot"]
        fixed[:, :3, 3] = np_["local_pos"]
        # body local transform with its first joint folded in: F (I + f1 A + f2 B) = C0 + f1 C1 + f2 C2
        c1 = np.zeros((n_bodies, 4, 4))
        c2 = np.zeros((n_bodies, 4, 4))
        for i in range(n_bodies):
            if first[i] < n_j:
                c1[i] = fixed[i] @ a_mat[first[i]]
                c2[i] = fixed[i] @ b_mat[first[i]]
        # level order: bodies by depth; the parents of level d are in level d - 1
        depth = []
        for par in self.parent:
            depth.append(0 if par < 0 else depth[par] + 1)
        order = sorted(range(n_bodies), key=lambda i: (depth[i], i))
        pos_in_order = {b: k for k, b in enumerate(order)}
        levels = []  # (start, stop, parent positions within the previous level)
        start = 0
        for d in range(max(depth) + 1 if depth else 0):
            members = [b for b in order if depth[b] == d]
            prev_start = levels[-1][0] if levels else 0
            parents = [pos_in_order[self.parent[b]] - prev_start for b in members] if d > 0 else []
            levels.append((start, start + len(members), parents))
            start += len(members)
        self._levels = [(s0, s1, torch.as_tensor(par, dtype=torch.long, device=self.device)) for s0, s1, par in levels]
        self._extra = [(pos_in_order[b], slot) for b, slot in extra]
        base = np.eye(4)
        base[:3, :3], base[:3, 3] = np_["base_rot"], np_["base_pos"]
        dev, dt = self.device, self.dtype
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=dt, device=dev)  # noqa: E731
        self._t = {
            "qpos0": t(np_["qpos0"]), "hinge": torch.as_tensor(hinge, device=dev), "col": torch.as_tensor(col, device=dev),
            "first": torch.as_tensor(first[order], device=dev), "c0": t(fixed[order]), "c1": t(c1[order]), "c2": t(c2[order]),
            "a": t(a_mat), "b": t(b_mat), "base": t(base), "eye4": t(np.eye(4)),
            "inverse": torch.as_tensor(np.argsort(order), dtype=torch.long, device=dev),
        }

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

        Vectorised over bodies: every body's local transform (``parent_T_body``, joints included) is
        ``C0 + f1 C1 + f2 C2`` with constant matrices, computed for all bodies at once; the tree is
        then composed one depth level at a time (a handful of batched matrix products instead of
        one per body), which is what makes the grasp optimiser's iterations cheap.
        """
        t = self._t
        if q.ndim != 2 or q.shape[1] != self.n_joints:
            raise ValueError(f"q must be (B, {self.n_joints}), got {tuple(q.shape)}")
        batch = q.shape[0]
        base = t["base"].expand(batch, 4, 4)
        if world_T_base is not None:
            if world_T_base.shape != (batch, 4, 4):
                raise ValueError(f"world_T_base must be ({batch}, 4, 4), got {tuple(world_T_base.shape)}")
            base = world_T_base.to(q.dtype) @ t["base"]
        angle = q[:, t["col"]] - t["qpos0"]  # (B, n_slots)
        f1 = torch.where(t["hinge"], torch.sin(angle), angle)
        f2 = torch.where(t["hinge"], 1 - torch.cos(angle), torch.zeros_like(angle))
        pad = angle.new_zeros(batch, 1)
        f1b = torch.cat([f1, pad], 1)[:, t["first"], None, None]  # (B, L, 1, 1), level order
        f2b = torch.cat([f2, pad], 1)[:, t["first"], None, None]
        local = t["c0"] + f1b * t["c1"] + f2b * t["c2"]  # (B, L, 4, 4) parent_T_body
        if self._extra:  # bodies with more than one joint: right-multiply the later joint factors
            local = local.clone()
            for k, slot in self._extra:
                local[:, k] = local[:, k] @ (t["eye4"] + f1[:, slot, None, None] * t["a"][slot]
                                             + f2[:, slot, None, None] * t["b"][slot])
        world = []
        prev = None
        for start, stop, parents in self._levels:
            parent_T = base[:, None] if prev is None else prev[:, parents]
            prev = parent_T @ local[:, start:stop]
            world.append(prev)
        if not world:
            empty = q.new_zeros(batch, 0, 3)
            return FKResult(empty[..., None].expand(batch, 0, 3, 3), empty, self.body_names)
        T = torch.cat(world, 1)[:, t["inverse"]]
        return FKResult(T[..., :3, :3], T[..., :3, 3], self.body_names)


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
