"""Analytic synthetic RGB-D scenes (numpy ray casting): a table and primitive objects with exact
per-pixel ground truth (object id, surface normal). For tests and the node's fuzz test; the
benchmark uses MuJoCo-rendered scenes (:mod:`dex_perception.bench`).

Frames: world = robot base frame (z up, table top at ``table_z``). The camera looks from ``eye``
at ``target`` with REP-103 optical axes (z forward, x right, y down), like
``dex_sim.scene.CameraConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dex_perception.camera import CameraModel


@dataclass(frozen=True)
class Primitive:
    """An object resting on the table.

    Attributes:
        kind: ``box`` (half extents ``size``), ``sphere`` (radius ``size[0]``) or ``cylinder``
            (upright, radius ``size[0]``, half height ``size[1]``).
        center: (x, y, z) [m] of the shape's centre in the world.
        size: Dimensions [m] (see ``kind``).
        yaw: Rotation about world z [rad] (boxes).
        rgb: Colour (0..255).
    """

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0
    rgb: tuple[int, int, int] = (200, 60, 60)


@dataclass(frozen=True)
class SyntheticScene:
    """A table (rectangle at ``table_z``), optional floor below and some primitives."""

    objects: tuple[Primitive, ...] = ()
    table_center: tuple[float, float] = (0.0, 0.45)
    table_size: tuple[float, float] = (1.2, 1.4)
    table_z: float = 0.0
    floor_z: float | None = -0.75


@dataclass
class SyntheticFrame:
    """One rendered frame: ``depth`` (H, W) float32 [m] (NaN = nothing hit), ``rgb`` (H, W, 3)
    uint8, ``ids`` (H, W) int32 (-1 nothing, 0 table, 1 floor, 2 + i object i), ``normals``
    (H, W, 3) world-frame unit normals, ``camera`` and ``base_T_camera`` (4, 4)."""

    depth: np.ndarray
    rgb: np.ndarray
    ids: np.ndarray
    normals: np.ndarray
    camera: CameraModel
    base_T_camera: np.ndarray


def look_at(eye, target) -> np.ndarray:
    """(4, 4) pose of an optical frame at ``eye`` looking at ``target`` (x right, y down; world z up)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    out = np.eye(4)
    out[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    out[:3, 3] = eye
    return out


def pinhole(width: int = 640, height: int = 480, fovy_deg: float = 42.5) -> CameraModel:
    """Centred-principal-point camera with the given vertical field of view."""
    f = 0.5 * height / np.tan(np.radians(fovy_deg) / 2)
    return CameraModel.from_camera_info(width, height, [f, 0, (width - 1) / 2, 0, f, (height - 1) / 2, 0, 0, 1])


def render(scene: SyntheticScene, camera: CameraModel, base_T_camera: np.ndarray, max_depth: float = 3.0) -> SyntheticFrame:
    """Ray-cast ``scene``; depth is the optical-axis z of the nearest hit."""
    h, w = camera.height, camera.width
    rays = camera.rays().reshape(-1, 2).astype(np.float64)
    rot, eye = base_T_camera[:3, :3], base_T_camera[:3, 3]
    d = np.column_stack([rays, np.ones(len(rays))]) @ rot.T  # world direction per unit optical z
    best = np.full(len(d), np.inf)
    ids = np.full(len(d), -1, dtype=np.int32)
    normals = np.zeros((len(d), 3))

    def take(t, n, ident):
        nonlocal best
        hit = np.isfinite(t) & (t > 1e-6) & (t < best)
        best = np.where(hit, t, best)
        ids[hit] = ident
        normals[hit] = n[hit] if n.ndim == 2 else n

    # table top (finite rectangle) and floor (infinite plane)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (scene.table_z - eye[2]) / d[:, 2]
    p = eye + t[:, None] * d
    cx, cy = scene.table_center
    sx, sy = scene.table_size
    on = (np.abs(p[:, 0] - cx) <= sx / 2) & (np.abs(p[:, 1] - cy) <= sy / 2)
    take(np.where(on, t, np.inf), np.array([0.0, 0.0, 1.0]), 0)
    if scene.floor_z is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (scene.floor_z - eye[2]) / d[:, 2]
        take(t, np.array([0.0, 0.0, 1.0]), 1)
    for i, obj in enumerate(scene.objects):
        t, n = _intersect(obj, eye, d)
        take(t, n, 2 + i)
    depth = np.where(best <= max_depth, best, np.nan).astype(np.float32)
    ids[~np.isfinite(depth)] = -1
    normals[~np.isfinite(depth)] = 0.0
    # flat colours with Lambert shading from a light above the camera
    base = np.zeros((len(d), 3))
    base[ids == 0] = (140, 115, 90)
    base[ids == 1] = (90, 95, 100)
    for i, obj in enumerate(scene.objects):
        base[ids == 2 + i] = obj.rgb
    light = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    shade = 0.45 + 0.55 * np.clip(normals @ light, 0, 1)
    rgb = np.clip(base * shade[:, None], 0, 255).astype(np.uint8)
    return SyntheticFrame(depth.reshape(h, w), rgb.reshape(h, w, 3), ids.reshape(h, w),
                          normals.reshape(h, w, 3), camera, base_T_camera.copy())


def _intersect(obj: Primitive, eye: np.ndarray, d: np.ndarray):
    """Ray parameter t (inf = miss) and world normals (N, 3) of rays ``eye + t d``."""
    c = np.asarray(obj.center, float)
    n = np.zeros_like(d)
    if obj.kind == "sphere":
        r = obj.size[0]
        oc = eye - c
        a = np.einsum("ij,ij->i", d, d)
        b = 2 * d @ oc
        cc = oc @ oc - r * r
        disc = b * b - 4 * a * cc
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(disc)) / (2 * a)
        t = np.where(disc >= 0, t, np.inf)
        p = eye + np.where(np.isfinite(t), t, 0)[:, None] * d
        n = (p - c) / r
        return t, n
    if obj.kind == "cylinder":
        r, hz = obj.size[0], obj.size[1]
        o2 = eye[:2] - c[:2]
        d2 = d[:, :2]
        a = np.einsum("ij,ij->i", d2, d2)
        b = 2 * d2 @ o2
        cc = o2 @ o2 - r * r
        disc = b * b - 4 * a * cc
        with np.errstate(invalid="ignore", divide="ignore"):
            ts = (-b - np.sqrt(disc)) / (2 * a)
        ts = np.where(disc >= 0, ts, np.inf)
        zs = eye[2] + np.where(np.isfinite(ts), ts, 0) * d[:, 2]
        ts = np.where(np.abs(zs - c[2]) <= hz, ts, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = (c[2] + hz - eye[2]) / d[:, 2]
        pc = eye + np.where(np.isfinite(tc), tc, 0)[:, None] * d
        tc = np.where(np.sum((pc[:, :2] - c[:2]) ** 2, axis=1) <= r * r, tc, np.inf)
        cap = tc < ts
        t = np.where(cap, tc, ts)
        p = eye + np.where(np.isfinite(t), t, 0)[:, None] * d
        n[:, :2] = (p[:, :2] - c[:2]) / r
        n[cap] = (0.0, 0.0, 1.0)
        return t, n
    if obj.kind == "box":
        cy, sy = np.cos(obj.yaw), np.sin(obj.yaw)
        rot = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1.0]])
        o = rot.T @ (eye - c)
        dl = d @ rot  # world -> local
        half = np.asarray(obj.size, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - o) / dl
            t2 = (half - o) / dl
        tmin = np.nanmax(np.minimum(t1, t2), axis=1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=1)
        axis = np.nanargmax(np.minimum(t1, t2), axis=1)
        hit = (tmax >= tmin) & (tmax > 0)
        t = np.where(hit, tmin, np.inf)
        nl = np.zeros_like(d)
        nl[np.arange(len(d)), axis] = -np.sign(dl[np.arange(len(d)), axis])
        return t, nl @ rot.T
    raise ValueError(f"unknown primitive kind {obj.kind!r}")


def random_scene(rng: np.random.Generator, num_objects: int, region=((-0.25, 0.35), (0.3, 0.75)),
                 min_gap: float = 0.03) -> SyntheticScene:
    """1..n primitives at random non-overlapping spots of ``region`` ((x_min, x_max), (y_min, y_max)) [m]."""
    objs: list[Primitive] = []
    placed: list[tuple[float, float, float]] = []
    palette = [(200, 60, 60), (60, 160, 70), (60, 90, 200), (220, 180, 40), (150, 70, 180), (40, 170, 170)]
    tries = 0
    while len(objs) < num_objects and tries < 500:
        tries += 1
        kind = ("box", "sphere", "cylinder")[int(rng.integers(3))]
        if kind == "box":
            size = tuple(rng.uniform([0.02, 0.02, 0.02], [0.06, 0.06, 0.08]))
            radius = float(np.hypot(size[0], size[1]))
            zc = size[2]
        elif kind == "sphere":
            size = (float(rng.uniform(0.025, 0.05)), 0.0, 0.0)
            radius, zc = size[0], size[0]
        else:
            size = (float(rng.uniform(0.02, 0.045)), float(rng.uniform(0.03, 0.09)), 0.0)
            radius, zc = size[0], size[1]
        x = float(rng.uniform(*region[0]))
        y = float(rng.uniform(*region[1]))
        if any(np.hypot(x - px, y - py) < radius + pr + min_gap for px, py, pr in placed):
            continue
        placed.append((x, y, radius))
        objs.append(Primitive(kind, (x, y, zc), tuple(float(s) for s in size), float(rng.uniform(0, np.pi)),
                              palette[len(objs) % len(palette)]))
    return SyntheticScene(tuple(objs))


@dataclass
class DefaultView:
    """The default camera of ``dex_sim.scene.CameraConfig`` (kept in sync by a test)."""

    eye: tuple[float, float, float] = (0.75, 1.45, 1.05)
    target: tuple[float, float, float] = (-0.05, 0.45, 0.25)
    width: int = 640
    height: int = 480
    fovy_deg: float = 42.5
    extra: dict = field(default_factory=dict)

    def camera(self) -> CameraModel:
        return pinhole(self.width, self.height, self.fovy_deg)

    def base_T_camera(self) -> np.ndarray:
        return look_at(self.eye, self.target)
