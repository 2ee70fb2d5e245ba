"""Link shapes for visualisation outside MuJoCo (RViz markers): each collision geom of a robot as a
primitive or a triangle list, in its link (body) frame.

Meshes are exported as their convex hull triangles (what MuJoCo collides), a few hundred per link,
so a whole robot fits in one MarkerArray at joint-state rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.spatial import ConvexHull

_T = mujoco.mjtGeom


@dataclass(frozen=True)
class LinkShape:
    """One shape rigidly attached to a link.

    Attributes:
        body: Link (body) name.
        kind: ``sphere``, ``capsule``, ``cylinder``, ``box`` or ``triangles``.
        body_T_shape: (4, 4) pose of the shape in the body frame (z = capsule/cylinder axis).
        size: ``sphere`` (r,), ``capsule``/``cylinder`` (r, half-length), ``box`` (half-extents x, y, z).
        triangles: (T, 3, 3) vertices [m] in the SHAPE frame for ``triangles``, else None.
        rgba: (4,) colour.
    """

    body: str
    kind: str
    body_T_shape: np.ndarray
    size: np.ndarray
    triangles: np.ndarray | None
    rgba: np.ndarray


def _pose(pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, quat)
    out = np.eye(4)
    out[:3, :3] = rot.reshape(3, 3)
    out[:3, 3] = pos
    return out


def collision_shapes(model: mujoco.MjModel, bodies: set[str] | None = None) -> list[LinkShape]:
    """Shapes of every collision geom (``contype`` or ``conaffinity`` non-zero) of ``bodies`` (default: all)."""
    out = []
    for g in range(model.ngeom):
        if not (model.geom_contype[g] or model.geom_conaffinity[g]):
            continue
        body = model.body(int(model.geom_bodyid[g])).name
        if bodies is not None and body not in bodies:
            continue
        t = int(model.geom_type[g])
        pose = _pose(model.geom_pos[g], model.geom_quat[g])
        size = np.asarray(model.geom_size[g], dtype=np.float64)
        rgba = np.array([0.75, 0.75, 0.78, 1.0])
        if t == _T.mjGEOM_SPHERE:
            out.append(LinkShape(body, "sphere", pose, size[:1], None, rgba))
        elif t in (_T.mjGEOM_CAPSULE, _T.mjGEOM_CYLINDER):
            out.append(LinkShape(body, "capsule" if t == _T.mjGEOM_CAPSULE else "cylinder", pose, size[:2], None, rgba))
        elif t == _T.mjGEOM_BOX:
            out.append(LinkShape(body, "box", pose, size[:3], None, rgba))
        elif t == _T.mjGEOM_MESH:
            mesh = int(model.geom_dataid[g])
            start, count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
            verts = np.asarray(model.mesh_vert[start:start + count], dtype=np.float64)
            hull = ConvexHull(verts)
            tris = verts[hull.simplices]
            # outward winding
            centre = verts.mean(axis=0)
            normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
            flip = np.einsum("ij,ij->i", normals, tris[:, 0] - centre) < 0
            tris[flip] = tris[flip][:, ::-1]
            out.append(LinkShape(body, "triangles", pose, np.zeros(3), tris, rgba))
    return out


class ShapePoser:
    """World poses of a robot's collision shapes for model joint positions (torch FK, one config).

    Args:
        robot: A loaded :class:`~dex_description.compose.Robot`.
    """

    def __init__(self, robot):
        import torch

        from dex_description.kinematics import RobotKinematics

        self._torch = torch
        self.kin = RobotKinematics(robot, dtype=torch.float64, with_spheres=False)
        self.shapes = [s for s in collision_shapes(robot.model) if s.body in self.kin.tree.body_names]
        self._index = [self.kin.tree.body_names.index(s.body) for s in self.shapes]
        self.joint_names = self.kin.joint_names

    def world_poses(self, q: np.ndarray) -> np.ndarray:
        """(n_shapes, 4, 4) ``world_T_shape`` for model joints ``q`` (n,) in :attr:`joint_names` order."""
        fk = self.kin.forward(self._torch.as_tensor(np.asarray(q, dtype=np.float64)[None]))
        rot, pos = fk.rot[0].numpy(), fk.pos[0].numpy()
        world_T_body = np.tile(np.eye(4), (len(self._index), 1, 1))
        world_T_body[:, :3, :3] = rot[self._index]
        world_T_body[:, :3, 3] = pos[self._index]
        return world_T_body @ np.stack([s.body_T_shape for s in self.shapes])


def marker_primitives(shape: LinkShape, world_T_shape: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Primitives a marker display can draw for one shape: ``(kind, pos (3,), quat wxyz (4,), scale (3,))``
    with kind in ``sphere``, ``cube``, ``cylinder``, ``triangles`` (scale: full extents [m]); a capsule
    becomes a cylinder and two spheres."""

    def pq(pose):
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, np.ascontiguousarray(pose[:3, :3]).reshape(9))
        return pose[:3, 3].copy(), quat

    pos, quat = pq(world_T_shape)
    if shape.kind == "sphere":
        return [("sphere", pos, quat, np.full(3, 2 * shape.size[0]))]
    if shape.kind == "box":
        return [("cube", pos, quat, 2 * shape.size)]
    if shape.kind in ("cylinder", "capsule"):
        r, h = shape.size
        out = [("cylinder", pos, quat, np.array([2 * r, 2 * r, 2 * h]))]
        if shape.kind == "capsule":
            for sign in (-1.0, 1.0):
                out.append(("sphere", pos + sign * h * world_T_shape[:3, 2], quat, np.full(3, 2 * r)))
        return out
    return [("triangles", pos, quat, np.ones(3))]
