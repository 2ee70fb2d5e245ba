"""Pictures of grasps: the floating hand at a pose next to the object, rendered off-screen by MuJoCo.

``MUJOCO_GL=egl`` (or ``osmesa``) renders on a CPU. Used by the benchmark for its sample images.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np

from dex_proposal.sim_eval import FloatingHandEvaluator


def render_grasp(ev: FloatingHandEvaluator, world_T_root: np.ndarray, u: np.ndarray, size: tuple[int, int] = (320, 320),
                 azimuth: float = 135.0, elevation: float = -25.0, distance: float | None = None) -> np.ndarray:
    """RGB image (H, W, 3) uint8 of the hand at ``(world_T_root, u)`` with the object at rest.

    The free camera looks at the object's centre from ``azimuth``/``elevation`` [deg].
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    m, d = ev.model, ev.data
    ev._reset()
    ev._set_pose(world_T_root, u, True)
    mujoco.mj_forward(m, d)
    m.vis.headlight.ambient[:] = [0.45, 0.45, 0.45]
    m.vis.headlight.diffuse[:] = [0.7, 0.7, 0.7]
    m.vis.global_.offwidth = max(m.vis.global_.offwidth, size[0])
    m.vis.global_.offheight = max(m.vis.global_.offheight, size[1])
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.lookat[:] = d.xipos[ev.object_body]
    cam.azimuth, cam.elevation = azimuth, elevation
    cam.distance = distance or 0.35
    opt = mujoco.MjvOption()
    with mujoco.Renderer(m, size[1], size[0]) as r:
        r.update_scene(d, cam, opt)
        return r.render().copy()


def grid_image(images: list[np.ndarray], cols: int) -> np.ndarray:
    """Tile equally sized images into a grid (row-major), white padding."""
    if not images:
        return np.full((8, 8, 3), 255, np.uint8)
    h, w, _ = images[0].shape
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
    return out
