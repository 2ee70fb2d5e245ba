"""Tabletop scene: a table, one robot combo mounted at the world origin, an RGB-D camera.

World frame = the arm's ``base_link`` (REP-103: x forward, z up; metres). The table top is the
plane ``z = table.top_z``; at the UR home pose the hand hangs over ``+y``, so the workspace and the
default camera target lie along ``+y``.

Use ``default_config()`` and override what you need (``dataclasses.replace``), MuJoCo-Playground
style::

    cfg = default_config()
    cfg = replace(cfg, camera=replace(cfg.camera, eye=(0.0, 1.4, 0.8)))
    scene = build_scene(load_robot("ur5e_leap"), cfg)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from dex_description.compose import ComposedSpec, Robot


@dataclass(frozen=True)
class TableConfig:
    """Table slab. ``center_xy`` [m] of the top, ``size_xy`` [m] full extents, ``thickness`` [m]."""

    center_xy: tuple[float, float] = (0.0, 0.45)
    size_xy: tuple[float, float] = (1.2, 1.4)
    top_z: float = 0.0
    thickness: float = 0.05
    rgba: tuple[float, float, float, float] = (0.55, 0.45, 0.35, 1.0)
    friction: tuple[float, float, float] = (0.6, 0.02, 0.0001)


@dataclass(frozen=True)
class CameraConfig:
    """A pinhole RGB-D camera looking from ``eye`` at ``target`` (world [m]).

    ``width``/``height`` [px] and ``fovy`` [deg] (vertical field of view; square pixels, centred
    principal point). ``near``/``far`` [m] clip depth.
    """

    name: str = "scene_camera"
    width: int = 640
    height: int = 480
    fovy: float = 42.5  # RealSense D435 colour stream, 640x480
    eye: tuple[float, float, float] = (0.75, 1.45, 1.05)
    target: tuple[float, float, float] = (-0.05, 0.45, 0.25)
    near: float = 0.1
    far: float = 3.0

    def world_T_optical(self) -> np.ndarray:
        """(4, 4) pose of the optical frame (z forward, x right, y down) in the world."""
        eye, target = np.asarray(self.eye, float), np.asarray(self.target, float)
        z = target - eye
        z /= np.linalg.norm(z)
        up = np.array([0.0, 0.0, 1.0])
        x = np.cross(z, up)
        if np.linalg.norm(x) < 1e-6:
            x = np.array([1.0, 0.0, 0.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        out = np.eye(4)
        out[:3, :3] = np.stack([x, y, z], axis=1)
        out[:3, 3] = eye
        return out

    def intrinsics(self) -> np.ndarray:
        """(3, 3) K matrix [px] implied by ``fovy`` and the image size."""
        f = 0.5 * self.height / np.tan(np.deg2rad(self.fovy) / 2)
        return np.array([[f, 0, (self.width - 1) / 2], [0, f, (self.height - 1) / 2], [0, 0, 1.0]])


@dataclass(frozen=True)
class SceneConfig:
    """Everything about the scene that is not the robot."""

    table: TableConfig = field(default_factory=TableConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    floor_z: float = -0.75
    key: str = "home"


def default_config() -> SceneConfig:
    """The default tabletop scene."""
    return SceneConfig()


def _mat_to_quat(rot: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).reshape(9))
    return quat


def build_scene(robot: Robot, cfg: SceneConfig | None = None) -> ComposedSpec:
    """Robot + table + floor + lights + camera, as a spec (compile with ``compose.compile_spec``).

    Rendering settings favour CPU speed: no shadows, no multisampling.
    """
    cfg = cfg or default_config()
    composed = robot.robot_spec()
    spec = composed.spec
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth = max(cfg.camera.width, 640)
    spec.visual.global_.offheight = max(cfg.camera.height, 480)
    world = spec.worldbody

    floor = world.add_geom()
    floor.name = "floor"
    floor.type = mujoco.mjtGeom.mjGEOM_PLANE
    floor.size = [3.0, 3.0, 0.1]
    floor.pos = [0.0, 0.0, cfg.floor_z]
    floor.rgba = [0.35, 0.37, 0.4, 1.0]

    t = cfg.table
    table = world.add_geom()
    table.name = "table"
    table.type = mujoco.mjtGeom.mjGEOM_BOX
    table.size = [t.size_xy[0] / 2, t.size_xy[1] / 2, t.thickness / 2]
    table.pos = [t.center_xy[0], t.center_xy[1], t.top_z - t.thickness / 2]
    table.rgba = list(t.rgba)
    table.friction = list(t.friction)

    for pos in ((0.8, -0.6, 2.2), (-0.8, 1.6, 2.0)):
        light = world.add_light()
        light.pos = list(pos)
        light.dir = list(-np.asarray(pos) / np.linalg.norm(pos))
        light.castshadow = False
        light.diffuse = [0.6, 0.6, 0.6]

    c = cfg.camera
    world_T_opt = c.world_T_optical()
    # MuJoCo cameras look along -z with y up: rotate the optical frame by pi about x.
    rot = world_T_opt[:3, :3] @ np.diag([1.0, -1.0, -1.0])
    cam = world.add_camera()
    cam.name = c.name
    cam.pos = world_T_opt[:3, 3]
    cam.quat = _mat_to_quat(rot)
    cam.fovy = c.fovy
    return composed
