"""Fingertip contact points: where on each finger pad a grasp optimiser puts its contacts.

BODex designates one contact per fingertip; we keep a few per pad (the first is the pad centre,
the others lie along the finger) so that optimisers can choose. They are *data* in the robot
YAML (``hand.contact_points``), generated once from the collision geometry by
:func:`pad_points` (``dexgrasp-description contact-points <robot>``) and checked by the tests:
every point lies on its link's collision surface and its normal points out of the link, toward
the side the finger flexes to.

Method: in the floating-hand model at the open pose, for a distal link with flexion axis ``a``
(its last hinge) and anchor ``o``, the pad faces ``d = a x f`` where ``f`` points from ``o`` to
the centre of the link's outermost collision geom (the fingertip). Rays cast along ``-d`` from outside hit the pad;
the hit is the point, MuJoCo's surface normal there the normal.
"""

from __future__ import annotations

import mujoco
import numpy as np

from dex_description.errors import DescriptionError


def _collision_geoms(model: mujoco.MjModel, body_id: int) -> list[int]:
    return [
        g for g in range(model.ngeom)
        if model.geom_bodyid[g] == body_id and (model.geom_contype[g] or model.geom_conaffinity[g])
    ]


def _ray(model, data, geoms: list[int], origin: np.ndarray, direction: np.ndarray) -> tuple[float, np.ndarray]:
    """Distance along ``direction`` to the first of ``geoms`` (inf when missed) and the surface normal there."""
    best, best_normal = np.inf, np.zeros(3)
    for g in geoms:
        normal = np.zeros(3)
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH:
            dist = mujoco.mj_rayMesh(model, data, g, origin, direction, normal)
        else:
            dist = mujoco.mju_rayGeom(data.geom_xpos[g], data.geom_xmat[g], model.geom_size[g], origin, direction,
                                      int(model.geom_type[g]), normal)
        if 0 <= dist < best:
            best, best_normal = dist, normal
    return best, best_normal


def pad_points(model: mujoco.MjModel, body: str, n_points: int = 3, spread: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Contact points on the pad of a distal link, in the link frame.

    Args:
        model: Floating-hand model (root at the origin); evaluated at ``qpos0``.
        body: The distal link.
        n_points: Points along the finger; the first is the pad centre.
        spread: Extra points at ``+-spread`` x the link's half-length along the finger.

    Returns:
        points (n, 3) [m] and outward unit normals (n, 3), link frame.
    """
    body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
    if body_id < 0:
        raise DescriptionError(f"no body '{body}'")
    if model.body_jntnum[body_id] < 1:
        raise DescriptionError(f"body '{body}' has no joint to define its flexion direction")
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    geoms = _collision_geoms(model, body_id)
    if not geoms:
        raise DescriptionError(f"body '{body}' has no collision geometry")
    j = model.body_jntadr[body_id] + model.body_jntnum[body_id] - 1
    rot = data.xmat[body_id].reshape(3, 3)
    axis = rot @ model.jnt_axis[j]
    anchor = data.xanchor[j]
    # the pad is on the outermost collision geom (LEAP: the soft tip; Shadow: the distal mesh)
    tip = max(geoms, key=lambda g: np.linalg.norm(data.geom_xpos[g] - anchor))
    centre = data.geom_xpos[tip]
    finger = centre - anchor
    finger /= np.linalg.norm(finger)
    half = model.geom_rbound[tip]
    pad = np.cross(axis, finger)
    pad /= np.linalg.norm(pad)
    offsets = [0.0] + [s * spread * half * k for k in range(1, n_points) for s in (1, -1)][: n_points - 1]
    points, normals = [], []
    for t in offsets:
        origin = centre + t * finger + 0.05 * pad
        dist, normal = _ray(model, data, geoms, origin, -pad)
        if not np.isfinite(dist):
            raise DescriptionError(f"no pad surface found on '{body}' at offset {t:+.4f} m")
        normal = normal / np.linalg.norm(normal)
        points.append(rot.T @ (origin - dist * pad - data.xpos[body_id]))
        normals.append(rot.T @ normal)
    return np.array(points), np.array(normals)


def main(argv: list[str] | None = None) -> int:
    """Print YAML ``contact_points`` for a robot's hand fingertips (to paste into its robot YAML)."""
    import argparse

    from dex_description.compose import load_robot

    parser = argparse.ArgumentParser(prog="dexgrasp-description contact-points", description=main.__doc__)
    parser.add_argument("robot")
    parser.add_argument("--finger", action="append", required=True, metavar="NAME=BODY",
                        help="finger name and its distal link, e.g. index=if_ds (repeat)")
    parser.add_argument("--points", type=int, default=3)
    args = parser.parse_args(argv)
    model = load_robot(args.robot, check=False).hand_model
    print("  contact_points:   # generated by `dexgrasp-description contact-points`; first point = pad centre")
    for item in args.finger:
        name, body = item.split("=", 1)
        pts, nrm = pad_points(model, body, args.points)
        fmt = lambda a: "[" + ", ".join(f"[{x:.5f}, {y:.5f}, {z:.5f}]" for x, y, z in a) + "]"
        print(f"    {name}:\n      body: {body}\n      points: {fmt(pts)}\n      normals: {fmt(nrm)}")
    return 0
