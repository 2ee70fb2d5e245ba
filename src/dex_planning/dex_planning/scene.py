"""What the arm must not hit: the table, optional boxes, and an obstacle point cloud.

Frames: every pose and point is in the planning world = the arm's ``base_link`` (REP-103, metres).
A box is given by its centre pose ``world_T_box`` (4, 4) and its FULL extents ``size`` (3,) [m]
(MuJoCo uses half extents: ``size / 2``). The cloud is (N, 3) points [m] (object and scene
clouds); the collision checker voxelises it into an octree of ``cloud_resolution`` [m].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dex_planning.errors import InvalidInputError


@dataclass(frozen=True)
class Box:
    """An obstacle box.

    Attributes:
        name: Unique name (shows in collision reports).
        world_T_box: (4, 4) pose of the box centre in the world.
        size: (3,) full extents along the box's x, y, z [m].
    """

    name: str
    world_T_box: np.ndarray
    size: np.ndarray

    def __post_init__(self):
        pose = np.asarray(self.world_T_box, dtype=np.float64)
        size = np.asarray(self.size, dtype=np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise InvalidInputError(f"box '{self.name}': world_T_box must be a finite (4, 4) matrix")
        rot = pose[:3, :3]
        if np.abs(rot.T @ rot - np.eye(3)).max() > 1e-6 or np.linalg.det(rot) < 0:
            raise InvalidInputError(f"box '{self.name}': world_T_box rotation is not a rotation matrix")
        if size.shape != (3,) or not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise InvalidInputError(f"box '{self.name}': size must be 3 positive finite extents [m], got {self.size!r}")
        object.__setattr__(self, "world_T_box", pose)
        object.__setattr__(self, "size", size)

    @staticmethod
    def axis_aligned(name: str, center, size) -> "Box":
        """An axis-aligned box from its centre (3,) and full extents (3,) [m]."""
        pose = np.eye(4)
        pose[:3, 3] = np.asarray(center, dtype=np.float64)
        return Box(name, pose, np.asarray(size, dtype=np.float64))


def table_box(center_xy=(0.0, 0.45), size_xy=(1.2, 1.4), top_z: float = 0.0, thickness: float = 0.05,
              name: str = "table") -> Box:
    """The table slab as a box whose top face is the plane ``z = top_z`` (defaults: dex_sim's table)."""
    return Box.axis_aligned(name, (center_xy[0], center_xy[1], top_z - thickness / 2),
                            (size_xy[0], size_xy[1], thickness))


@dataclass(frozen=True)
class PlanningScene:
    """Obstacles of one planning query (world frame).

    Attributes:
        boxes: Table and any extra boxes.
        cloud: (N, 3) obstacle points [m] or ``None``.
        cloud_resolution: Octree leaf size [m] for the cloud (a point occupies its whole leaf).
    """

    boxes: tuple[Box, ...] = ()
    cloud: np.ndarray | None = None
    cloud_resolution: float = 0.005

    def __post_init__(self):
        names = [b.name for b in self.boxes]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"box names must be unique, got {names}")
        if self.cloud is not None:
            cloud = np.asarray(self.cloud, dtype=np.float64).reshape(-1, 3) if np.size(self.cloud) else np.zeros((0, 3))
            if cloud.ndim != 2 or cloud.shape[1] != 3:
                raise InvalidInputError(f"cloud must be (N, 3), got {np.shape(self.cloud)}")
            cloud = cloud[np.all(np.isfinite(cloud), axis=1)]  # NaN = invalid depth pixels; dropped
            object.__setattr__(self, "cloud", cloud if len(cloud) else None)
        if not (np.isfinite(self.cloud_resolution) and self.cloud_resolution > 0):
            raise InvalidInputError(f"cloud_resolution must be > 0 [m], got {self.cloud_resolution}")

    @property
    def n_points(self) -> int:
        return 0 if self.cloud is None else int(self.cloud.shape[0])


def default_scene(cloud: np.ndarray | None = None, boxes: tuple[Box, ...] = ()) -> PlanningScene:
    """The default table plus optional cloud and extra boxes."""
    return PlanningScene(boxes=(table_box(),) + tuple(boxes), cloud=cloud)
