"""Off-screen RGB + metric depth on CPU (``MUJOCO_GL=egl`` or ``osmesa``) or GPU (EGL)."""

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


class RGBDRenderer:
    """Renders RGB and depth from a named camera; one GL context, reused.

    Args:
        model: Compiled model (its ``vis.global_.offwidth/offheight`` must cover the image size).
        width, height: Image size [px].
        far: Depth beyond this [m] is invalid (NaN).
    """

    def __init__(self, model: mujoco.MjModel, width: int = 640, height: int = 480, far: float = 3.0):
        os.environ.setdefault("MUJOCO_GL", "egl")
        self.model = model
        self.far = far
        self._rgb = mujoco.Renderer(model, height, width)
        self._depth = mujoco.Renderer(model, height, width)
        self._depth.enable_depth_rendering()

    def render(self, data: mujoco.MjData, camera: str) -> RGBD:
        """Render the current state of ``data`` from ``camera``."""
        self._rgb.update_scene(data, camera)
        rgb = self._rgb.render().copy()
        self._depth.update_scene(data, camera)
        depth = self._depth.render().astype(np.float32)
        depth[(depth <= 0) | (depth >= self.far)] = np.nan
        return RGBD(rgb, depth)

    def close(self) -> None:
        self._rgb.close()
        self._depth.close()

    def __enter__(self) -> "RGBDRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
