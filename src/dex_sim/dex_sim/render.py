"""Off-screen RGB + metric depth on CPU (``MUJOCO_GL=egl`` or ``osmesa``) or GPU (EGL).

One GL context per renderer; RGB and depth come from ONE render pass (``mjr_readPixels`` reads
both buffers), which halves the cost of an RGB-D frame compared with two ``mujoco.Renderer``
passes. Segmentation is a separate pass, on demand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import mujoco
import numpy as np


@dataclass
class RGBD:
    """One rendered frame. ``rgb`` (H, W, 3) uint8; ``depth`` (H, W) float32 [m], z-depth along the
    optical axis, NaN where nothing is closer than the far plane."""

    rgb: np.ndarray
    depth: np.ndarray


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """Metric depth (H, W) float [m], NaN invalid -> uint16 [mm], 0 invalid (RealSense 16UC1)."""
    mm = np.nan_to_num(np.asarray(depth, dtype=np.float64) * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.rint(mm), 0, 65535).astype(np.uint16)


class RGBDRenderer:
    """Renders RGB and depth from a named camera; one GL context, reused.

    Args:
        model: Compiled model (its ``vis.global_.offwidth/offheight`` must cover the image size).
        width, height: Image size [px].
        far: Depth beyond this [m] is invalid (NaN).
    """

    def __init__(self, model: mujoco.MjModel, width: int = 640, height: int = 480, far: float = 3.0):
        os.environ.setdefault("MUJOCO_GL", "egl")
        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            raise ValueError(f"image {width}x{height} exceeds the model's offscreen buffer "
                             f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}")
        self.model = model
        self.width, self.height = width, height
        self.far = far
        self._gl = mujoco.GLContext(width, height)
        self._gl.make_current()
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._con.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR  # reversed Z: as mujoco.Renderer
        self._scene = mujoco.MjvScene(model, maxgeom=10000)
        self._opt = mujoco.MjvOption()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._rgb = np.empty((height, width, 3), np.uint8)
        self._zbuf = np.empty((height, width), np.float32)
        extent = model.stat.extent
        znear = np.float32(model.vis.map.znear * extent)
        zfar = np.float32(model.vis.map.zfar * extent)
        c = -(zfar + znear) / (zfar - znear)
        d = -(np.float32(2) * zfar * znear) / (zfar - znear)
        self._c = float(np.float32(-0.5) * c - np.float32(0.5))  # reversed-Z projection (MuJoCo >= 3.3)
        self._d = float(np.float32(-0.5) * d)

    @property
    def option(self) -> mujoco.MjvOption:
        """Visualisation options (e.g. ``geomgroup`` to hide groups)."""
        return self._opt

    def _update(self, data: mujoco.MjData, camera: str | int) -> None:
        cam_id = camera if isinstance(camera, int) else self.model.camera(camera).id
        self._cam.fixedcamid = cam_id
        mujoco.mjv_updateScene(self.model, data, self._opt, None, self._cam, mujoco.mjtCatBit.mjCAT_ALL, self._scene)

    def render(self, data: mujoco.MjData, camera: str | int) -> RGBD:
        """Render the current state of ``data`` from ``camera`` (RGB and depth, one pass)."""
        self._gl.make_current()
        self._update(data, camera)
        mujoco.mjr_render(self._rect, self._scene, self._con)
        mujoco.mjr_readPixels(self._rgb, self._zbuf, self._rect, self._con)
        rgb = np.flipud(self._rgb).copy()
        z = np.flipud(self._zbuf).astype(np.float64)
        with np.errstate(divide="ignore"):
            depth = (self._d / (z + self._c)).astype(np.float32)
        depth[~np.isfinite(depth) | (depth <= 0) | (depth >= self.far)] = np.nan
        return RGBD(rgb, depth)

    def render_segmentation(self, data: mujoco.MjData, camera: str | int) -> np.ndarray:
        """(H, W, 2) int32 per pixel: (object id, object type) as ``mujoco.Renderer`` returns it;
        (-1, -1) for background. Geoms: type ``mjOBJ_GEOM``, id = geom id."""
        self._gl.make_current()
        self._update(data, camera)
        flags = self._scene.flags.copy()
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = True
        self._scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True
        try:
            mujoco.mjr_render(self._rect, self._scene, self._con)
            mujoco.mjr_readPixels(self._rgb, None, self._rect, self._con)
        finally:
            np.copyto(self._scene.flags, flags)
        img = np.flipud(self._rgb).astype(np.uint32)
        segid = img[..., 0] + img[..., 1] * 256 + img[..., 2] * 65536
        n = self._scene.ngeom
        table = np.full((n + 1, 2), -1, np.int32)
        for g in self._scene.geoms[:n]:
            if g.segid != -1:
                table[g.segid + 1] = (g.objid, g.objtype)
        return table[np.minimum(segid, n)]

    def close(self) -> None:
        if self._gl is not None:
            self._gl.make_current()
            self._con.free()
            self._gl.free()
            self._gl = None

    def __enter__(self) -> RGBDRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
