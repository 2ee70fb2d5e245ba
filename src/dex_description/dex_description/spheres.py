"""Collision spheres fitted to each link's collision geometry (cuRobo-style sphere models).

Planning (collision avoidance) and grasp synthesis (penetration energies) approximate every link by
a handful of spheres rigidly attached to the link's body frame. This module fits those spheres to
the *collision* geometry of a MuJoCo model (the geoms MuJoCo itself collides: ``contype`` or
``conaffinity`` non-zero), measures how well they cover it, and stores them as YAML.

Conventions:

* lengths in metres [m]; every centre is expressed in the MuJoCo BODY frame of its link (the frame
  of ``data.xpos``/``data.xquat``, *not* the inertial frame);
* signed depth is positive inside the geometry (distance to its surface [m]) and negative outside
  (minus the distance to the geometry [m]);
* quaternions are ``(w, x, y, z)``;
* everything random is drawn from ``numpy.random.default_rng`` keyed by ``(seed, crc32(body),
  stream)``: results are deterministic for a seed and do not depend on which other bodies are
  fitted or in which order.

Method (the idea of cuRobo's sphere fitting, implemented from scratch):

1. sample points uniformly in the volume of the union of the body's collision geoms (rejection
   sampling in each geom's bounding box, mixture weighted by geom volume, each point kept with
   probability ``1/k`` where ``k`` geoms contain it, which makes the mixture uniform on the union);
2. candidate centres: the geoms' own centres (and capsule/cylinder axis ends), a subset of the
   volume samples, and a few samples inside every single geom (so thin plates get candidates);
   each with radius ``depth + margin``. ``depth`` is the largest single-geom depth (exact for one
   convex geom: the sphere then reaches at most ``margin`` outside), raised where geoms overlap to
   an estimate of the depth in the union from dense boundary samples (``union_depth``), or, with
   ``fill="hull"``, the depth in the convex hull of the body's geoms (spheres may fill hollows);
3. greedy set cover: repeatedly take the candidate that covers the most still-uncovered volume
   samples until ``coverage_target`` or ``max_spheres`` is reached; then a few rounds of swap
   refinement (replace one sphere by the best other candidate while that covers more) and pruning
   of spheres that are not needed to reach the target;
4. :func:`coverage` measures the result on fresh samples: volume and surface coverage, the largest
   uncovered gap on the surface, and how far the spheres reach outside the geometry (exact
   distances, on points spread over the sphere surfaces).

Choosing ``margin`` is the trade-off: a sphere on a plate of half-thickness ``t`` covers a disc of
radius ``sqrt(margin^2 + 2 t margin)`` of it, so thin or flat links need a larger margin (or many
spheres); the shipped presets (:data:`PRESETS`) use 3 mm on the fingers, 6-10 mm on palms and
forearms, 12-15 mm on the arms.

Meshes are collided by MuJoCo as their convex hulls; we use the same hull (MuJoCo's own hull vertex
set when the model carries it, else scipy's hull of all mesh vertices), in the body frame.
MuJoCo re-centres and re-orients meshes when it compiles a model and folds that into
``geom_pos``/``geom_quat``, so ``body_p = geom_pos + R(geom_quat) @ mesh_vert`` holds for the
compiled model (checked against ``mj_geomDistance`` in the tests).

Command line: ``python -m dex_description.spheres --all`` regenerates every shipped sphere file
(``config/robots/spheres/<model>.yaml``) and its picture (``docs/images/spheres_<model>.png``) from
the presets in :data:`PRESETS`; see :func:`main_fit` for the single-model options.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shlex
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import mujoco
import numpy as np
import yaml
from scipy.spatial import ConvexHull, QhullError

from dex_description.errors import DescriptionError, ModelFileError, RobotConfigError

__all__ = [
    "CollisionGeom",
    "SphereSet",
    "CoverageReport",
    "SphereFileError",
    "SphereFile",
    "PRESETS",
    "collision_geoms",
    "geom_signed_depth",
    "signed_depth",
    "sample_volume",
    "sample_surface",
    "fit_spheres",
    "fit_body_spheres",
    "fit_model_spheres",
    "coverage",
    "coverage_of_geoms",
    "save_spheres",
    "read_sphere_file",
    "load_spheres",
    "render_spheres",
    "load_model",
    "main_fit",
]

_T = mujoco.mjtGeom
SUPPORTED_TYPES = {
    int(_T.mjGEOM_SPHERE): "sphere",
    int(_T.mjGEOM_CAPSULE): "capsule",
    int(_T.mjGEOM_ELLIPSOID): "ellipsoid",
    int(_T.mjGEOM_CYLINDER): "cylinder",
    int(_T.mjGEOM_BOX): "box",
    int(_T.mjGEOM_MESH): "mesh",
}
_CHUNK = 1 << 21  # elements per temporary array in the pairwise computations


class SphereFileError(RobotConfigError):
    """A sphere YAML is missing, unreadable or malformed.

    Attributes:
        path: The YAML file.
        field: Dotted path of the offending field, e.g. ``bodies.rh_ffdistal.spheres[2]``.
    """


# ----------------------------------------------------------------------------------------------
# Collision geometry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollisionGeom:
    """One collision geom of a body, in the body frame.

    Attributes:
        name: Geom name (``"<body>/geom<i>"`` for an unnamed geom).
        geom_id: Index in the model (``-1`` for a synthetic geom).
        type: MuJoCo geom type (``mujoco.mjtGeom`` value).
        size: MuJoCo ``geom_size`` (3,) [m]: sphere ``(r)``, capsule/cylinder ``(r, half-length along
            local z)``, box and ellipsoid ``(half-extents / semi-axes)``; for a mesh the half-extents
            of its bounding box (informative only).
        pos: Geom origin in the body frame (3,) [m].
        rot: Rotation geom -> body (3, 3): ``p_body = pos + rot @ p_geom``.
        vertices: Mesh only: convex-hull vertices in the body frame (V, 3) [m]; else ``None``.
        halfspaces: Mesh only: hull facets ``n . p + b <= 0`` inside, ``n`` unit (F, 4); else ``None``.
        triangles: Mesh only: hull triangles in the body frame (F, 3, 3) [m]; else ``None``.
        volume: Geom volume [m^3].
        area: Geom surface area [m^2] (ellipsoid: Knud Thomsen's approximation, error < 1.1 %).
    """

    name: str
    geom_id: int
    type: int
    size: np.ndarray
    pos: np.ndarray
    rot: np.ndarray
    vertices: np.ndarray | None = None
    halfspaces: np.ndarray | None = None
    triangles: np.ndarray | None = None
    volume: float = 0.0
    area: float = 0.0

    @property
    def type_name(self) -> str:
        """``"sphere"``, ``"capsule"``, ``"ellipsoid"``, ``"cylinder"``, ``"box"`` or ``"mesh"``."""
        return SUPPORTED_TYPES[self.type]

    @property
    def quat(self) -> np.ndarray:
        """Orientation geom -> body as a quaternion ``(w, x, y, z)``."""
        q = np.zeros(4)
        mujoco.mju_mat2Quat(q, np.ascontiguousarray(self.rot, dtype=float).ravel())
        return q

    def local_bounds(self) -> np.ndarray:
        """Bounding box (2, 3) [m] in the geom frame (mesh: in the body frame)."""
        s = self.size
        t = self.type_name
        if t == "sphere":
            h = np.array([s[0]] * 3)
        elif t == "capsule":
            h = np.array([s[0], s[0], s[1] + s[0]])
        elif t == "cylinder":
            h = np.array([s[0], s[0], s[1]])
        elif t in ("box", "ellipsoid"):
            h = np.array(s[:3], dtype=float)
        else:
            return np.stack([self.vertices.min(0), self.vertices.max(0)])
        return np.stack([-h, h])

    def aabb(self) -> np.ndarray:
        """Axis-aligned bounding box (2, 3) in the body frame [m]."""
        if self.type_name == "mesh":
            return self.local_bounds()
        lo, hi = self.local_bounds()
        c = 0.5 * (lo + hi)
        h = 0.5 * (hi - lo)
        centre = self.pos + self.rot @ c
        ext = np.abs(self.rot) @ h
        return np.stack([centre - ext, centre + ext])


def make_geom(
    type_name: str,
    size: Sequence[float] = (0.0, 0.0, 0.0),
    pos: Sequence[float] = (0.0, 0.0, 0.0),
    quat: Sequence[float] = (1.0, 0.0, 0.0, 0.0),
    vertices: np.ndarray | None = None,
    name: str = "",
    geom_id: int = -1,
) -> CollisionGeom:
    """Build a :class:`CollisionGeom` from MuJoCo-style parameters.

    Args:
        type_name: One of ``sphere capsule ellipsoid cylinder box mesh``.
        size: MuJoCo ``size`` (see :class:`CollisionGeom`) [m]; ignored for a mesh.
        pos: Geom position in the body frame [m].
        quat: Geom orientation in the body frame ``(w, x, y, z)``.
        vertices: Mesh only: points in the BODY frame (V, 3) [m] whose convex hull is the geom.
        name: Geom name.
        geom_id: Model index, ``-1`` for a synthetic geom.

    Raises:
        DescriptionError: Unknown type, non-positive size, or a degenerate hull.
    """
    codes = {v: k for k, v in SUPPORTED_TYPES.items()}
    if type_name not in codes:
        raise DescriptionError(f"geom '{name}': unsupported collision geom type '{type_name}' "
                               f"(supported: {', '.join(codes)})")
    q = np.asarray(quat, dtype=float)
    q = q / np.linalg.norm(q)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, q)
    rot = rot.reshape(3, 3)
    pos = np.asarray(pos, dtype=float).copy()
    s = np.zeros(3)
    s[: len(size)] = np.asarray(size, dtype=float)[:3]
    if type_name == "mesh":
        if vertices is None or len(vertices) < 4:
            raise DescriptionError(f"mesh geom '{name}': needs at least 4 vertices")
        pts = np.asarray(vertices, dtype=float)
        try:
            hull = ConvexHull(pts)
        except QhullError as exc:
            raise DescriptionError(f"mesh geom '{name}': degenerate convex hull ({exc})") from exc
        hv = pts[hull.vertices]
        # qhull's facets are triangles of a triangulated hull, equations with unit outward normals.
        tris = pts[hull.simplices]
        eq = hull.equations.copy()
        lo, hi = hv.min(0), hv.max(0)
        return CollisionGeom(name, geom_id, codes["mesh"], 0.5 * (hi - lo), pos, rot, hv, eq, tris,
                             float(hull.volume), float(hull.area))
    need = {"sphere": 1, "capsule": 2, "cylinder": 2, "box": 3, "ellipsoid": 3}[type_name]
    if np.any(s[:need] <= 0):
        raise DescriptionError(f"geom '{name}': {type_name} needs {need} positive size values, got {s[:need]}")
    r = s[0]
    if type_name == "sphere":
        vol, area = 4 / 3 * math.pi * r**3, 4 * math.pi * r**2
    elif type_name == "capsule":
        vol = math.pi * r**2 * 2 * s[1] + 4 / 3 * math.pi * r**3
        area = 2 * math.pi * r * 2 * s[1] + 4 * math.pi * r**2
    elif type_name == "cylinder":
        vol = math.pi * r**2 * 2 * s[1]
        area = 2 * math.pi * r * 2 * s[1] + 2 * math.pi * r**2
    elif type_name == "box":
        vol = 8 * s[0] * s[1] * s[2]
        area = 8 * (s[0] * s[1] + s[1] * s[2] + s[2] * s[0])
    else:
        a, b, c = s
        vol = 4 / 3 * math.pi * a * b * c
        p = 1.6075
        area = 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    return CollisionGeom(name, geom_id, codes[type_name], s, pos, rot, None, None, None, float(vol), float(area))


def _body_id(model: mujoco.MjModel, body: str) -> int:
    bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
    if bid < 0:
        names = [model.body(i).name for i in range(model.nbody)]
        raise DescriptionError(f"no body '{body}' in the model (bodies: {', '.join(names)})")
    return bid


def _is_collision(model: mujoco.MjModel, g: int) -> bool:
    return bool(model.geom_contype[g] or model.geom_conaffinity[g])


def mesh_hull_vertices(model: mujoco.MjModel, mesh_id: int) -> np.ndarray:
    """Vertices (V, 3) [m] of the convex hull MuJoCo collides for a mesh, in the MESH frame.

    The mesh frame is the compiled one (MuJoCo re-centres/re-orients meshes; the geom's
    ``geom_pos``/``geom_quat`` already include that). Uses MuJoCo's own hull vertex set
    (``mesh_graph``) when the model carries it, else all mesh vertices (same hull).
    """
    adr = int(model.mesh_vertadr[mesh_id])
    num = int(model.mesh_vertnum[mesh_id])
    verts = np.asarray(model.mesh_vert[adr: adr + num], dtype=float)
    gadr = int(model.mesh_graphadr[mesh_id])
    if gadr >= 0:
        nv = int(model.mesh_graph[gadr])
        ids = np.asarray(model.mesh_graph[gadr + 2 + nv: gadr + 2 + 2 * nv], dtype=int)
        if nv >= 4 and ids.min() >= 0 and ids.max() < num:
            return verts[ids]
    return verts


def collision_geoms(model: mujoco.MjModel, body: str) -> list[CollisionGeom]:
    """The collision geoms of a body (``contype`` or ``conaffinity`` non-zero), in the body frame.

    Args:
        model: Compiled MuJoCo model.
        body: Body name.

    Returns:
        One :class:`CollisionGeom` per collision geom (possibly empty), in model order.

    Raises:
        DescriptionError: Unknown body, or a collision geom of an unsupported type (plane, hfield,
            SDF).
    """
    bid = _body_id(model, body)
    out = []
    for g in range(model.ngeom):
        if model.geom_bodyid[g] != bid or not _is_collision(model, g):
            continue
        t = int(model.geom_type[g])
        name = model.geom(g).name or f"{body}/geom{g}"
        if t not in SUPPORTED_TYPES:
            raise DescriptionError(f"body '{body}': collision geom '{name}' has unsupported type "
                                   f"{mujoco.mjtGeom(t).name}")
        pos, quat = model.geom_pos[g].copy(), model.geom_quat[g].copy()
        if t == int(_T.mjGEOM_MESH):
            mv = mesh_hull_vertices(model, int(model.geom_dataid[g]))
            rot = np.zeros(9)
            mujoco.mju_quat2Mat(rot, quat)
            vb = pos + mv @ rot.reshape(3, 3).T
            geom = make_geom("mesh", pos=pos, quat=quat, vertices=vb, name=name, geom_id=g)
        else:
            geom = make_geom(SUPPORTED_TYPES[t], model.geom_size[g], pos, quat, name=name, geom_id=g)
        out.append(geom)
    return out


def bodies_with_collision(model: mujoco.MjModel) -> list[str]:
    """Names of the bodies that own at least one collision geom, in model order."""
    ids = sorted({int(model.geom_bodyid[g]) for g in range(model.ngeom) if _is_collision(model, g)})
    return [model.body(i).name for i in ids]


# ----------------------------------------------------------------------------------------------
# Signed depth
# ----------------------------------------------------------------------------------------------


def _point_triangle_distance(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Distance [m] from points (N, 3) to their nearest triangle among (F, 3, 3); returns (N,)."""
    out = np.empty(len(p))
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, bc = b - a, c - a, c - b
    step = max(1, _CHUNK // max(1, 3 * len(tri)))
    for s in range(0, len(p), step):
        q = p[s: s + step, None, :]
        ap, bp, cp = q - a, q - b, q - c
        d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
        d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
        d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
        va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
        with np.errstate(divide="ignore", invalid="ignore"):
            den = va + vb + vc
            den = np.where(np.abs(den) > 0, den, 1.0)
            v, w = vb / den, vc / den
            closest = a + ab * v[..., None] + ac * w[..., None]  # interior of the face
            # Voronoi regions of edges and vertices; later assignments take precedence.
            m = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
            t = (d4 - d3) / np.where(m, (d4 - d3) + (d5 - d6), 1.0)
            closest = np.where(m[..., None], b + bc * t[..., None], closest)
            m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
            t = d2 / np.where(m, d2 - d6, 1.0)
            closest = np.where(m[..., None], a + ac * t[..., None], closest)
            m = (d6 >= 0) & (d5 <= d6)
            closest = np.where(m[..., None], c, closest)
            m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
            t = d1 / np.where(m, d1 - d3, 1.0)
            closest = np.where(m[..., None], a + ab * t[..., None], closest)
            m = (d3 >= 0) & (d4 <= d3)
            closest = np.where(m[..., None], b, closest)
            m = (d1 <= 0) & (d2 <= 0)
            closest = np.where(m[..., None], a, closest)
        out[s: s + step] = np.sqrt(((closest - q) ** 2).sum(-1).min(1))
    return out


def _ellipsoid_sdf(p: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Exact signed distance (negative inside) [m] to an axis-aligned ellipsoid, by bisection.

    The closest point is ``x_i = a_i^2 p_i / (a_i^2 + t)`` with ``t`` the root of
    ``sum (a_i p_i / (a_i^2 + t))^2 = 1`` on ``t > -min a_i^2`` (monotone, so bisection converges).
    Degenerate inside points (on the minor axis plane's medial set) are handled by a tiny offset of
    ``p``; the error there is below 1e-7 m.
    """
    a = np.asarray(axes, dtype=float)
    q = np.maximum(np.abs(p), 1e-12)
    a2 = a * a
    k = ((q / a) ** 2).sum(1)
    inside = k < 1
    lo = np.full(len(q), -a2.min()) + 1e-18
    hi = np.maximum(np.linalg.norm(q, axis=1) * a.max(), a2.max())
    lo = np.where(inside, lo, 0.0)
    hi = np.where(inside, 0.0, hi)
    for _ in range(100):
        t = 0.5 * (lo + hi)
        f = (((a * q) / (a2 + t[:, None])) ** 2).sum(1) - 1
        lo = np.where(f > 0, t, lo)
        hi = np.where(f > 0, hi, t)
    t = 0.5 * (lo + hi)
    x = a2 * q / (a2 + t[:, None])
    d = np.linalg.norm(x - q, axis=1)
    return np.where(inside, -d, d)


def geom_signed_depth(geom: CollisionGeom, points: np.ndarray, exact_outside: bool = True) -> np.ndarray:
    """Signed depth of points w.r.t. one geom: + distance to the surface inside, - distance outside.

    Args:
        geom: The geom.
        points: (N, 3) in the body frame [m].
        exact_outside: For meshes, compute the exact outside distance (point-triangle); when
            ``False`` outside values are the largest facet-plane distance, a lower bound of the
            distance (the sign and all inside values stay exact). Other types are always exact.

    Returns:
        (N,) [m].
    """
    p = np.asarray(points, dtype=float).reshape(-1, 3)
    t = geom.type_name
    if t == "mesh":
        hs = geom.halfspaces
        sd = np.empty(len(p))
        step = max(1, _CHUNK // len(hs))
        for s in range(0, len(p), step):  # exact inside (convex polytope), a lower bound outside
            sd[s: s + step] = (p[s: s + step] @ hs[:, :3].T + hs[:, 3]).max(1)
        if exact_outside:
            out = sd > 0
            if np.any(out):
                sd[out] = _point_triangle_distance(p[out], geom.triangles)
        return -sd
    loc = (p - geom.pos) @ geom.rot  # body -> geom frame
    s = geom.size
    if t == "sphere":
        sd = np.linalg.norm(loc, axis=1) - s[0]
    elif t == "capsule":
        z = np.clip(loc[:, 2], -s[1], s[1])
        sd = np.sqrt(loc[:, 0] ** 2 + loc[:, 1] ** 2 + (loc[:, 2] - z) ** 2) - s[0]
    elif t == "cylinder":
        d = np.stack([np.hypot(loc[:, 0], loc[:, 1]) - s[0], np.abs(loc[:, 2]) - s[1]], 1)
        sd = np.minimum(d.max(1), 0) + np.linalg.norm(np.maximum(d, 0), axis=1)
    elif t == "box":
        d = np.abs(loc) - s
        sd = np.minimum(d.max(1), 0) + np.linalg.norm(np.maximum(d, 0), axis=1)
    else:
        sd = _ellipsoid_sdf(loc, s)
    return -sd


def signed_depth(geoms: Sequence[CollisionGeom], points: np.ndarray, exact_outside: bool = True) -> np.ndarray:
    """Signed depth w.r.t. the UNION of geoms [m]: the maximum over the single geoms.

    Outside the union this is exactly minus the distance to the union (with ``exact_outside``);
    inside it is the largest single-geom depth, a lower bound of the depth in the union (exact
    where only one geom contains the point's nearest surface). Its sign is the exact
    inside/outside test.

    Args:
        geoms: The geoms, all in one (body) frame.
        points: (N, 3) [m].
        exact_outside: See :func:`geom_signed_depth`.

    Returns:
        (N,) [m].
    """
    p = np.asarray(points, dtype=float).reshape(-1, 3)
    if not geoms:
        raise DescriptionError("signed_depth: no geoms")
    if not exact_outside:
        return np.max([geom_signed_depth(g, p, False) for g in geoms], axis=0)
    sd = np.max([geom_signed_depth(g, p, False) for g in geoms], axis=0)
    out = sd < 0
    if np.any(out):  # only the outside distance of meshes can differ from the cheap value
        sd[out] = np.max([geom_signed_depth(g, p[out], True) for g in geoms], axis=0)
    return sd


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def _rng(seed: int, body: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(body.encode()), int(stream)])


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _sample_in_geom(geom: CollisionGeom, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points uniform in the volume of one geom, body frame [m] (rejection in its bounding box)."""
    lo, hi = geom.local_bounds()
    if geom.type_name == "box":
        return geom.pos + rng.uniform(lo, hi, size=(n, 3)) @ geom.rot.T
    ratio = {"sphere": math.pi / 6, "ellipsoid": math.pi / 6}.get(geom.type_name)
    if ratio is None:
        ratio = geom.volume / float(np.prod(hi - lo))
    out, have = [], 0
    while have < n:
        m = int((n - have) / max(ratio, 1e-3) * 1.2) + 16
        pts = rng.uniform(lo, hi, size=(m, 3))
        if geom.type_name != "mesh":
            pts = geom.pos + pts @ geom.rot.T
        pts = pts[geom_signed_depth(geom, pts, exact_outside=False) >= 0]
        out.append(pts)
        have += len(pts)
    return np.concatenate(out)[:n]


def sample_volume(geoms: Sequence[CollisionGeom], n: int, rng: np.random.Generator) -> np.ndarray:
    """n points uniformly distributed in the volume of the union of geoms (body frame) [m].

    A mixture over geoms weighted by volume, each point kept with probability ``1/k`` where ``k``
    is the number of geoms that contain it: that makes the density uniform on the union.
    """
    vols = np.array([g.volume for g in geoms])
    prob = vols / vols.sum()
    out, have = [], 0
    while have < n:
        m = int((n - have) * 1.3) + 16
        counts = rng.multinomial(m, prob)
        pts = np.concatenate([_sample_in_geom(g, c, rng) for g, c in zip(geoms, counts) if c > 0])
        if len(geoms) > 1:
            k = (np.stack([geom_signed_depth(g, pts, False) for g in geoms]) >= 0).sum(0)
            pts = pts[rng.uniform(size=len(pts)) * np.maximum(k, 1) < 1.0]
        out.append(pts)
        have += len(pts)
    pts = np.concatenate(out)
    return pts[rng.permutation(len(pts))[:n]]


def _sample_on_geom(geom: CollisionGeom, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform on one geom's surface and their outward unit normals, body frame."""
    t, s = geom.type_name, geom.size
    if t == "mesh":
        tri = geom.triangles
        areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        idx = rng.choice(len(tri), size=n, p=areas / areas.sum())
        u, v = rng.uniform(size=n), rng.uniform(size=n)
        flip = u + v > 1
        u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
        t3 = tri[idx]
        pts = t3[:, 0] + u[:, None] * (t3[:, 1] - t3[:, 0]) + v[:, None] * (t3[:, 2] - t3[:, 0])
        # facet normals of qhull's equations match its simplices row by row
        return pts, geom.halfspaces[idx, :3].copy()
    if t == "sphere":
        nrm = _unit_vectors(rng, n)
        loc = s[0] * nrm
    elif t == "box":
        fa = np.array([s[1] * s[2], s[0] * s[2], s[0] * s[1]])
        face = rng.choice(6, size=n, p=np.repeat(fa, 2) / (2 * fa.sum()))
        axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
        loc = rng.uniform(-s, s, size=(n, 3))
        loc[np.arange(n), axis] = sign * s[axis]
        nrm = np.zeros((n, 3))
        nrm[np.arange(n), axis] = sign
    elif t in ("capsule", "cylinder"):
        r, h = s[0], s[1]
        side = 2 * math.pi * r * 2 * h
        ends = 4 * math.pi * r * r if t == "capsule" else 2 * math.pi * r * r
        on_side = rng.uniform(size=n) < side / (side + ends)
        phi = rng.uniform(0, 2 * math.pi, size=n)
        loc = np.stack([r * np.cos(phi), r * np.sin(phi), rng.uniform(-h, h, size=n)], 1)
        nrm = np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], 1)
        k = int((~on_side).sum())
        if t == "capsule":
            d = _unit_vectors(rng, k)
            loc[~on_side] = r * d + np.stack([0 * d[:, 0], 0 * d[:, 0], np.sign(d[:, 2]) * h], 1)
            nrm[~on_side] = d
        else:
            rad = r * np.sqrt(rng.uniform(size=k))
            ph = rng.uniform(0, 2 * math.pi, size=k)
            sg = np.where(rng.uniform(size=k) < 0.5, 1.0, -1.0)
            loc[~on_side] = np.stack([rad * np.cos(ph), rad * np.sin(ph), sg * h], 1)
            nrm[~on_side] = np.stack([0 * sg, 0 * sg, sg], 1)
    else:  # ellipsoid: map the sphere, keep with probability ~ area element (exactly uniform)
        a, b, c = s
        gmax = max(b * c, a * c, a * b)
        locs, have = [], 0
        while have < n:
            d = _unit_vectors(rng, 2 * (n - have) + 16)
            g = np.sqrt((b * c * d[:, 0]) ** 2 + (a * c * d[:, 1]) ** 2 + (a * b * d[:, 2]) ** 2)
            d = d[rng.uniform(size=len(d)) * gmax < g]
            locs.append(d * s)
            have += len(d)
        loc = np.concatenate(locs)[:n]
        nrm = loc / (s * s)
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    return geom.pos + loc @ geom.rot.T, nrm @ geom.rot.T


def sample_surface(
    geoms: Sequence[CollisionGeom], n: int, rng: np.random.Generator, eps: float = 1e-6
) -> np.ndarray:
    """n points on the boundary of the union of geoms (body frame) [m], about uniform by area.

    Points are drawn on each geom's surface (mixture weighted by area) and kept when a step of
    ``eps`` [m] along the outward normal leaves the union: that drops the parts of a surface that
    lie inside another geom or on a face shared with an adjacent geom. Where two geoms' surfaces
    coincide and both face outwards the density is doubled (a measure-zero case in practice).
    """
    areas = np.array([g.area for g in geoms])
    prob = areas / areas.sum()
    out, have, rounds = [], 0, 0
    while have < n:
        m = int((n - have) * 1.5) + 16
        counts = rng.multinomial(m, prob)
        parts = [_sample_on_geom(g, c, rng) for g, c in zip(geoms, counts) if c > 0]
        pts = np.concatenate([p for p, _ in parts])
        nrm = np.concatenate([q for _, q in parts])
        if len(geoms) > 1:
            pts = pts[signed_depth(geoms, pts + eps * nrm, exact_outside=False) < 0]
        out.append(pts)
        have += len(pts)
        rounds += 1
        if rounds > 200 and have == 0:
            raise DescriptionError("sample_surface: the union has no exposed surface")
    pts = np.concatenate(out)
    return pts[rng.permutation(len(pts))[:n]]


def fibonacci_sphere(n: int) -> np.ndarray:
    """n about evenly spread unit vectors (n, 3) (deterministic Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(np.maximum(0, 1 - z * z))
    phi = i * math.pi * (3 - math.sqrt(5))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


# ----------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------


@dataclass
class SphereSet:
    """Spheres approximating one body.

    Attributes:
        body: Body name.
        centres: (N, 3) sphere centres in the body frame [m].
        radii: (N,) radii [m].
        margin: Allowed protrusion used in the fit [m].
        fit_volume_coverage: Volume coverage reached on the fitting samples (0..1).
    """

    body: str
    centres: np.ndarray
    radii: np.ndarray
    margin: float = 0.0
    fit_volume_coverage: float = float("nan")

    def __len__(self) -> int:
        return len(self.radii)


@dataclass
class CoverageReport:
    """How well spheres cover a body's collision geometry (estimated by sampling).

    Attributes:
        body: Body name.
        count: Number of spheres.
        volume: Fraction of volume samples of the geometry inside at least one sphere.
        surface: Fraction of surface samples within ``surface_tol`` of a sphere
            (``|x - c| <= r + surface_tol``).
        surface_max_gap: Largest distance from a surface sample to the sphere set [m] (0 when
            every sample is covered): how deep an obstacle could touch the link unseen.
        max_protrusion: Largest distance by which the spheres reach outside the geometry [m]
            (estimated on points on the sphere surfaces).
        mean_protrusion: Mean of that distance over the exposed sphere-surface points (those not
            inside another sphere) [m].
        max_protrusion_hull: Largest distance by which the spheres reach outside the convex hull
            of the body's collision geoms [m] (equals ``max_protrusion`` for a single convex geom;
            smaller where spheres fill hollows, see ``fill`` in :func:`fit_spheres`).
        surface_tol: Tolerance of ``surface`` [m].
        n_volume: Number of volume samples.
        n_surface: Number of surface samples.
    """

    body: str
    count: int
    volume: float
    surface: float
    surface_max_gap: float
    max_protrusion: float
    mean_protrusion: float
    max_protrusion_hull: float
    surface_tol: float
    n_volume: int
    n_surface: int

    def to_dict(self) -> dict:
        """The fields stored in a sphere YAML."""
        return {
            "volume": round(float(self.volume), 4),
            "surface": round(float(self.surface), 4),
            "surface_max_gap": round(float(self.surface_max_gap), 5),
            "max_protrusion": round(float(self.max_protrusion), 5),
            "mean_protrusion": round(float(self.mean_protrusion), 5),
            "max_protrusion_hull": round(float(self.max_protrusion_hull), 5),
            "count": int(self.count),
        }


def _cover_matrix(cands: np.ndarray, radii: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Boolean (C, P): candidate sphere j contains point i."""
    out = np.empty((len(cands), len(pts)), dtype=bool)
    pn = (pts * pts).sum(1)
    step = max(1, _CHUNK // max(1, len(pts)))
    for s in range(0, len(cands), step):
        c = cands[s: s + step]
        d2 = (c * c).sum(1)[:, None] + pn[None, :] - 2.0 * c @ pts.T
        out[s: s + step] = d2 <= (radii[s: s + step, None] ** 2)
    return out


def _greedy_cover(A: np.ndarray, target: float, max_k: int, refine_iters: int) -> list[int]:
    """Greedy set cover on a boolean candidate x point matrix, then swap refinement and pruning.

    Returns the chosen candidate rows. Deterministic (ties go to the lowest index).
    """
    n_pts = A.shape[1]
    need = int(math.ceil(target * n_pts - 1e-9))
    Af = A.astype(np.float32)
    chosen: list[int] = []
    cover = np.zeros(n_pts, dtype=np.int32)
    while len(chosen) < max_k and (cover > 0).sum() < need:
        gain = Af @ (cover == 0).astype(np.float32)
        j = int(np.argmax(gain))
        if gain[j] <= 0:
            break
        chosen.append(j)
        cover += A[j]
    # swap refinement: replace a sphere by the candidate covering most of what the others miss
    for _ in range(refine_iters):
        changed = False
        for k in range(len(chosen)):
            rest = cover - A[chosen[k]]
            gain = Af @ (rest == 0).astype(np.float32)
            j = int(np.argmax(gain))
            if gain[j] > gain[chosen[k]] + 0.5:
                chosen[k] = j
                changed = True
            cover = rest + A[chosen[k]]
        if not changed:
            break
    # pruning: drop spheres not needed for the target (smallest contribution first)
    if (cover > 0).sum() >= need:
        while len(chosen) > 1:
            solo = np.array([((cover - A[j]) == 0).sum() - (cover == 0).sum() for j in chosen])
            k = int(np.argmin(solo))
            if (cover - A[chosen[k]] > 0).sum() < need:
                break
            cover -= A[chosen[k]]
            chosen.pop(k)
    return chosen


def convex_hull_geom(geoms: Sequence[CollisionGeom], name: str = "hull", n_curve: int = 256) -> CollisionGeom:
    """The convex hull of a union of geoms, as a mesh geom in the same frame.

    Box and mesh corners are exact; curved geoms contribute ``n_curve`` points of their surface
    (Fibonacci lattice, rims of cylinders), so the hull is inscribed in the exact one by well under
    1 % of the radius.
    """
    u = fibonacci_sphere(n_curve)
    ring = np.stack([np.cos(np.linspace(0, 2 * math.pi, n_curve, endpoint=False)),
                     np.sin(np.linspace(0, 2 * math.pi, n_curve, endpoint=False)), np.zeros(n_curve)], 1)
    pts = []
    for g in geoms:
        s, t = g.size, g.type_name
        if t == "mesh":
            pts.append(g.vertices)
            continue
        if t == "box":
            loc = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float) * s
        elif t == "sphere":
            loc = s[0] * u
        elif t == "ellipsoid":
            loc = s * u
        elif t == "capsule":
            loc = np.concatenate([s[0] * u + [0, 0, s[1]], s[0] * u - [0, 0, s[1]]])
        else:
            loc = np.concatenate([s[0] * ring + [0, 0, s[1]], s[0] * ring - [0, 0, s[1]]])
        pts.append(g.pos + loc @ g.rot.T)
    return make_geom("mesh", vertices=np.concatenate(pts), name=name)


def _seed_centres(geoms: Sequence[CollisionGeom]) -> np.ndarray:
    """Deep candidate centres of each geom (body frame): primitive centres, capsule/cylinder axis
    points, the mean of a mesh hull's vertices (inside: the hull is convex)."""
    out = []
    for g in geoms:
        if g.type_name == "mesh":
            out.append(g.vertices.mean(0, keepdims=True))
            continue
        out.append(g.pos[None])
        if g.type_name in ("capsule", "cylinder"):
            z = g.size[1] - (0.0 if g.type_name == "capsule" else min(g.size[0], g.size[1]))
            if z > 0:
                out.append(g.pos + np.outer([-1.0, 1.0], g.rot[:, 2] * z))
    return np.concatenate(out)


def _union_depth_estimate(
    geoms: Sequence[CollisionGeom], points: np.ndarray, rng: np.random.Generator, n_boundary: int = 30000
) -> np.ndarray:
    """Depth [m] of inside points in the union of geoms, estimated from boundary samples.

    The distance to the nearest of ``n_boundary`` samples of the union's boundary over-estimates
    the true distance by at most the largest hole between samples; subtracting twice the mean
    sample spacing makes it a (statistical) lower bound. The protrusion that results is measured
    exactly afterwards by :func:`coverage`.
    """
    from scipy.spatial import cKDTree

    surf = sample_surface(geoms, n_boundary, rng)
    area = float(sum(g.area for g in geoms))  # an upper bound of the boundary's area
    spacing = math.sqrt(area / n_boundary)
    d, _ = cKDTree(surf).query(points)
    return np.maximum(d - 2.0 * spacing, 0.0)


def fit_spheres(
    geoms: Sequence[CollisionGeom],
    body: str = "body",
    max_spheres: int = 12,
    margin: float = 0.002,
    coverage_target: float = 0.98,
    n_samples: int = 6000,
    n_candidates: int = 2000,
    refine_iters: int = 3,
    seed: int = 0,
    union_depth: bool = True,
    surface_weight: float = 0.0,
    stratify: float = 0.5,
    fill: str = "none",
) -> SphereSet:
    """Fit spheres to a union of geoms given in one frame (see the module docstring).

    Args:
        geoms: Collision geoms in the body frame.
        body: Name used in the result and to key the random stream.
        max_spheres: Upper bound on the number of spheres.
        margin: Allowed protrusion outside the geometry [m]; every sphere's radius is its centre's
            depth + ``margin``.
        coverage_target: Stop adding spheres once this fraction of the volume samples is covered.
        n_samples: Volume samples used by the fit.
        n_candidates: How many of them are candidate centres.
        refine_iters: Rounds of swap refinement.
        seed: Random seed.
        union_depth: Where geoms overlap, also estimate the depth in the union from dense samples
            of the union's boundary (see :func:`_union_depth_estimate`) and use the larger depth.
            Without it the radius uses the largest single-geom depth, which guarantees a
            protrusion of at most ``margin`` but leaves thick overlaps (e.g. a palm built of
            stacked boxes) with needlessly small spheres.
        surface_weight: Add this many surface samples per volume sample to the points the greedy
            cover counts (0: volume only).
        stratify: Besides ``n_candidates`` volume samples, draw ``stratify * n_candidates /
            len(geoms)`` candidates inside each geom, so that thin plates (little volume) still get
            candidate centres.
        fill: ``"none"``: radii are depth in the geometry + ``margin``. ``"hull"``: candidates are
            also drawn in the convex hull of the body's geoms and radii are depth in that hull +
            ``margin``: spheres may fill hollows between the geoms (e.g. the U-shaped brackets of
            the LEAP hand, whose slots the next link's motor occupies anyway), which covers
            bracket-like links with far fewer spheres; the protrusion beyond the real geometry is
            then larger than ``margin`` (reported by :func:`coverage`), beyond the hull at most
            ``margin``.

    Returns:
        The spheres; ``fit_volume_coverage`` is measured on the fitting samples.
    """
    if not geoms:
        raise DescriptionError(f"body '{body}': no collision geoms to fit spheres to")
    if max_spheres < 1 or not (0 < coverage_target <= 1) or margin < 0 or n_samples < 10:
        raise DescriptionError(f"body '{body}': invalid fit parameters (max_spheres={max_spheres}, "
                               f"coverage_target={coverage_target}, margin={margin}, n_samples={n_samples})")
    if fill not in ("none", "hull"):
        raise DescriptionError(f"body '{body}': fill must be 'none' or 'hull', got '{fill}'")
    rng = _rng(seed, body, 0)
    pts = sample_volume(geoms, n_samples, rng)
    nc = min(n_candidates, len(pts))
    # the geoms' own centres (and capsule segment ends) first: the deepest points of primitives
    cands = np.concatenate([_seed_centres(geoms), pts[:nc]])  # samples are in random order already
    if len(geoms) > 1 and stratify > 0:  # small geoms (thin plates) get candidates of their own
        per = max(1, int(stratify * nc / len(geoms)))
        cands = np.concatenate([cands] + [_sample_in_geom(g, per, rng) for g in geoms])
    if fill == "hull" and len(geoms) > 1:
        hull = convex_hull_geom(geoms, name=f"{body}/hull")
        cands = np.concatenate([cands, _sample_in_geom(hull, nc, rng)])
        depth = np.maximum(geom_signed_depth(hull, cands, exact_outside=False), 0.0)
    else:
        depth = np.maximum(signed_depth(geoms, cands, exact_outside=False), 0.0)
        if union_depth and len(geoms) > 1:
            depth = np.maximum(depth, _union_depth_estimate(geoms, cands, rng))
    radii = depth + margin
    targets = pts
    if surface_weight > 0:
        targets = np.concatenate([pts, sample_surface(geoms, int(round(surface_weight * len(pts))), rng)])
    A = _cover_matrix(cands, radii, targets)
    chosen = _greedy_cover(A, coverage_target, max_spheres, refine_iters)
    chosen = sorted(chosen, key=lambda j: (cands[j, 2], cands[j, 1], cands[j, 0]))
    frac = float(A[chosen, : len(pts)].any(0).mean()) if chosen else 0.0
    return SphereSet(body, cands[chosen].copy(), radii[chosen].copy(), float(margin), frac)


def fit_body_spheres(
    model: mujoco.MjModel,
    body: str,
    max_spheres: int = 12,
    margin: float = 0.002,
    coverage_target: float = 0.98,
    n_samples: int = 6000,
    n_candidates: int = 2000,
    refine_iters: int = 3,
    seed: int = 0,
    **kwargs,
) -> SphereSet:
    """Fit spheres to the collision geoms of one body of a MuJoCo model (see :func:`fit_spheres`;
    ``kwargs`` go there too: ``union_depth``, ``surface_weight``, ``stratify``, ``fill``).

    Raises:
        DescriptionError: Unknown body, no collision geoms, unsupported geom type.
    """
    return fit_spheres(collision_geoms(model, body), body, max_spheres, margin, coverage_target,
                       n_samples, n_candidates, refine_iters, seed, **kwargs)


FIT_KEYS = ("max_spheres", "margin", "coverage_target", "n_samples", "n_candidates", "refine_iters",
            "union_depth", "surface_weight", "stratify", "fill")


def body_params(body: str, base: dict, overrides: dict[str, dict] | None) -> dict:
    """Fit parameters of one body: ``base`` updated by every override whose pattern matches.

    Args:
        body: Body name.
        base: Parameters for every body (keys of :func:`fit_spheres`).
        overrides: ``fnmatch`` pattern (e.g. ``rh_*distal``, or an exact name) -> parameters; applied
            in order, so a later match wins.

    Raises:
        DescriptionError: An override names an unknown parameter.
    """
    from fnmatch import fnmatchcase

    out = dict(base)
    for pat, upd in (overrides or {}).items():
        bad = set(upd) - set(FIT_KEYS)
        if bad:
            raise DescriptionError(f"override '{pat}': unknown fit parameter(s) {sorted(bad)} "
                                   f"(known: {', '.join(FIT_KEYS)})")
        if fnmatchcase(body, pat):
            out.update(upd)
    return out


def fit_model_spheres(
    model: mujoco.MjModel,
    bodies: Iterable[str] | None = None,
    max_spheres: int = 12,
    margin: float = 0.002,
    coverage_target: float = 0.98,
    n_samples: int = 6000,
    seed: int = 0,
    overrides: dict[str, dict] | None = None,
    progress: Callable[[str, SphereSet], None] | None = None,
    **kwargs,
) -> dict[str, SphereSet]:
    """Fit spheres to every body that has collision geoms (or to ``bodies``).

    Args:
        model: Compiled MuJoCo model.
        bodies: Body names; default all bodies with collision geoms, in model order.
        max_spheres, margin, coverage_target, n_samples, seed: See :func:`fit_spheres`.
        overrides: Per-body parameters, see :func:`body_params`, e.g.
            ``{"rh_palm": {"margin": 0.007, "max_spheres": 16}}``.
        progress: Called with ``(body, spheres)`` after each body.
        **kwargs: Further :func:`fit_spheres` parameters for every body (``fill``, ...).

    Returns:
        Body name -> spheres, in model order.
    """
    names = list(bodies) if bodies is not None else bodies_with_collision(model)
    base = dict(max_spheres=max_spheres, margin=margin, coverage_target=coverage_target,
                n_samples=n_samples, **kwargs)
    out = {}
    for b in names:
        prm = body_params(b, base, overrides)
        s = fit_body_spheres(model, b, seed=seed, **prm)
        out[b] = s
        if progress is not None:
            progress(b, s)
    return out


def round_spheres(spheres: SphereSet) -> SphereSet:
    """The spheres as stored in YAML: centres rounded to 1 um, radii rounded UP to 1 um [m]."""
    c = np.round(np.asarray(spheres.centres, dtype=float), 6)
    r = np.ceil(np.asarray(spheres.radii, dtype=float) * 1e6 - 1e-6) / 1e6
    return SphereSet(spheres.body, c, r, spheres.margin, spheres.fit_volume_coverage)


# ----------------------------------------------------------------------------------------------
# Coverage
# ----------------------------------------------------------------------------------------------


def _dist_to_spheres(pts: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Signed distance [m] of points to the union of spheres (negative inside)."""
    if len(radii) == 0:
        return np.full(len(pts), np.inf)
    out = np.empty(len(pts))
    step = max(1, _CHUNK // max(1, len(radii)))
    for s in range(0, len(pts), step):
        d = np.linalg.norm(pts[s: s + step, None, :] - centres[None], axis=2) - radii
        out[s: s + step] = d.min(1)
    return out


def coverage_of_geoms(
    geoms: Sequence[CollisionGeom],
    centres: np.ndarray,
    radii: np.ndarray,
    body: str = "body",
    n_samples: int = 20000,
    seed: int = 0,
    surface_tol: float = 0.001,
    n_sphere_points: int = 256,
) -> CoverageReport:
    """Coverage of a union of geoms by spheres (see :class:`CoverageReport`).

    Uses random streams independent of the fit's (same ``seed`` gives fresh samples), so the
    numbers are an out-of-sample estimate. ``n_samples`` volume and ``n_samples`` surface samples;
    ``n_sphere_points`` points per sphere (Fibonacci lattice) for the protrusion.
    """
    centres = np.asarray(centres, dtype=float).reshape(-1, 3)
    radii = np.asarray(radii, dtype=float).reshape(-1)
    vol = sample_volume(geoms, n_samples, _rng(seed, body, 1))
    surf = sample_surface(geoms, n_samples, _rng(seed, body, 2))
    v_cov = float((_dist_to_spheres(vol, centres, radii) <= 0).mean())
    ds = _dist_to_spheres(surf, centres, radii)
    s_cov = float((ds <= surface_tol).mean())
    gap = float(max(0.0, ds.max()))
    if len(radii):
        u = fibonacci_sphere(n_sphere_points)
        sp = (centres[:, None, :] + radii[:, None, None] * u[None]).reshape(-1, 3)
        owner = np.repeat(np.arange(len(radii)), n_sphere_points)
        d_other = np.linalg.norm(sp[:, None, :] - centres[None], axis=2) - radii
        d_other[np.arange(len(sp)), owner] = np.inf
        exposed = d_other.min(1) > 0
        prot = np.maximum(-signed_depth(geoms, sp, exact_outside=True), 0.0)
        max_p = float(prot.max())
        mean_p = float(prot[exposed].mean()) if exposed.any() else 0.0
        hull = geoms[0] if len(geoms) == 1 else convex_hull_geom(geoms)
        # the sampled hull of curved geoms is slightly inscribed; the hull contains the geoms, so
        # the distance to the geometry bounds the distance to the hull from above
        prot_h = np.minimum(np.maximum(-geom_signed_depth(hull, sp, exact_outside=True), 0.0), prot)
        max_h = float(prot_h.max())
    else:
        max_p = mean_p = max_h = 0.0
    return CoverageReport(body, len(radii), v_cov, s_cov, gap, max_p, mean_p, max_h, surface_tol,
                          len(vol), len(surf))


def coverage(
    model: mujoco.MjModel,
    body: str,
    spheres: SphereSet | tuple[np.ndarray, np.ndarray],
    n_samples: int = 20000,
    seed: int = 0,
    surface_tol: float = 0.001,
) -> CoverageReport:
    """How well spheres cover a body's collision geometry.

    Args:
        model: Compiled MuJoCo model.
        body: Body name.
        spheres: A :class:`SphereSet` or ``(centres (N, 3), radii (N,))`` in the body frame [m].
        n_samples: Volume samples and surface samples (each).
        seed: Random seed.
        surface_tol: A surface sample counts as covered within this distance of a sphere [m].
    """
    if isinstance(spheres, SphereSet):
        c, r = spheres.centres, spheres.radii
    else:
        c, r = spheres
    return coverage_of_geoms(collision_geoms(model, body), c, r, body, n_samples, seed, surface_tol)


# ----------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0.0" if s in ("-0", "0", "") else s


def _flow(d: dict) -> str:
    """One-line YAML flow mapping (keys quoted where YAML needs it, e.g. ``'rh_*distal'``)."""

    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (np.floating, float)):
            return round(float(v), 6)
        if isinstance(v, (np.integer,)):
            return int(v)
        return v

    return yaml.safe_dump(clean(d), default_flow_style=True, width=1 << 30, sort_keys=False).strip()


def save_spheres(
    path: str | Path,
    model_name: str,
    spheres: dict[str, SphereSet],
    reports: dict[str, CoverageReport] | None = None,
    params: dict | None = None,
    command: str | None = None,
    source: str | None = None,
) -> Path:
    """Write a sphere YAML (format in :func:`read_sphere_file`).

    Centres are rounded to 1 um and radii rounded UP to 1 um, so the stored spheres still cover
    what the fitted ones covered.

    Args:
        path: Output file (parent directories are created).
        model_name: Model name stored as ``model``, e.g. ``shadow_right``.
        spheres: Body -> spheres.
        reports: Body -> coverage report (stored as ``coverage``).
        params: Fit parameters (stored as ``params``).
        command: The command that generated the file (header comment).
        source: The model file the spheres belong to (stored as ``source``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# generated by `{command or 'dex_description.spheres.save_spheres'}`; do not edit by hand"]
    lines.append("# per body: spheres [x, y, z, r], centre in the MuJoCo BODY frame [m], radius [m];")
    lines.append("# coverage: volume/surface fractions, surface_max_gap, protrusions [m] "
                 "(see dex_description.spheres.CoverageReport)")
    lines.append(f"model: {model_name}")
    if source:
        lines.append(f"source: {source}")
    lines.append(f"params: {_flow(params or {})}")
    if reports:
        tot = sum(len(s) for s in spheres.values())
        lines.append(f"total_spheres: {tot}")
    lines.append("bodies:")
    for b, s in spheres.items():
        lines.append(f"  {b}:")
        rows = []
        for c, r in zip(np.asarray(s.centres), np.asarray(s.radii)):
            rr = math.ceil(float(r) * 1e6 - 1e-6) / 1e6
            rows.append("[" + ", ".join(_fmt(v) for v in (*np.round(c, 6), rr)) + "]")
        lines.append("    spheres: [" + ", ".join(rows) + "]")
        if reports and b in reports:
            lines.append(f"    coverage: {_flow(reports[b].to_dict())}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class SphereFile:
    """Contents of a sphere YAML.

    Attributes:
        path: The file.
        model: Model name.
        source: Model file the spheres belong to ('' when not stored).
        params: Fit parameters.
        spheres: Body -> ``(centres (N, 3) float64 [m] body frame, radii (N,) [m])``.
        coverage: Body -> stored coverage numbers (may be empty).
    """

    path: Path
    model: str
    source: str
    params: dict
    spheres: dict[str, tuple[np.ndarray, np.ndarray]]
    coverage: dict[str, dict] = field(default_factory=dict)


def read_sphere_file(path: str | Path) -> SphereFile:
    """Read and validate a sphere YAML.

    Format::

        model: <name>
        source: <model file>            # optional
        params: {...}                   # optional mapping
        bodies:
          <body>:
            spheres: [[x, y, z, r], ...]   # body frame [m], r > 0
            coverage: {...}                # optional mapping

    Raises:
        SphereFileError: Missing/unreadable file, invalid YAML, or a malformed field; the message
            names the file and the field.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SphereFileError(path, "(file)", f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SphereFileError(path, "(file)", f"invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SphereFileError(path, "(root)", "expected a mapping with 'model' and 'bodies'")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise SphereFileError(path, "model", "missing or not a non-empty string")
    params = data.get("params", {}) or {}
    if not isinstance(params, dict):
        raise SphereFileError(path, "params", "must be a mapping")
    bodies = data.get("bodies")
    if not isinstance(bodies, dict) or not bodies:
        raise SphereFileError(path, "bodies", "missing or not a non-empty mapping of body -> spheres")
    out, cov = {}, {}
    for b, entry in bodies.items():
        f = f"bodies.{b}"
        if not isinstance(entry, dict):
            raise SphereFileError(path, f, "must be a mapping with 'spheres'")
        rows = entry.get("spheres")
        if not isinstance(rows, list) or not rows:
            raise SphereFileError(path, f + ".spheres", "missing or not a non-empty list of [x, y, z, r]")
        arr = np.zeros((len(rows), 4))
        for i, row in enumerate(rows):
            if (not isinstance(row, list) or len(row) != 4
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)):
                raise SphereFileError(path, f"{f}.spheres[{i}]", f"expected [x, y, z, r] numbers, got {row!r}")
            arr[i] = row
            if not np.all(np.isfinite(arr[i])) or arr[i, 3] <= 0:
                raise SphereFileError(path, f"{f}.spheres[{i}]", f"need finite values and r > 0, got {row!r}")
        c = entry.get("coverage", {}) or {}
        if not isinstance(c, dict):
            raise SphereFileError(path, f + ".coverage", "must be a mapping")
        out[str(b)] = (arr[:, :3].copy(), arr[:, 3].copy())
        cov[str(b)] = c
    return SphereFile(path, model, str(data.get("source", "") or ""), params, out, cov)


def load_spheres(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Body -> ``(centres (N, 3) float64 in the body frame [m], radii (N,) [m])`` from a sphere YAML.

    Raises:
        SphereFileError: See :func:`read_sphere_file`.
    """
    return read_sphere_file(path).spheres


# ----------------------------------------------------------------------------------------------
# Picture
# ----------------------------------------------------------------------------------------------


def _make_renderer(m: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """An off-screen renderer. Without a display and with mujoco's GL backend left at its default
    (GLFW, which cannot work headless; happens when mujoco was imported before this module and
    ``MUJOCO_GL`` was unset), EGL is used instead."""
    import warnings

    from mujoco.rendering.classic import gl_context as glc

    headless = not os.environ.get("DISPLAY") and os.environ.get("MUJOCO_GL", "").lower() in ("", "egl")
    old = getattr(glc, "GLContext", None)
    swap = headless and old is not None and "glfw" in getattr(old, "__module__", "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if swap:
                from mujoco.egl import GLContext as EglContext

                glc.GLContext = EglContext
            return mujoco.Renderer(m, height, width)
    except Exception as exc:  # depends on the machine's OpenGL
        raise DescriptionError(f"cannot render off-screen (set MUJOCO_GL=egl or osmesa before importing "
                               f"mujoco): {exc}") from exc
    finally:
        if swap:
            glc.GLContext = old


def render_spheres(
    model: mujoco.MjModel,
    spheres: dict[str, SphereSet] | dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    width: int = 480,
    height: int = 400,
    views: Sequence[tuple[float, float]] = ((150.0, -25.0), (60.0, -25.0), (0.0, -89.0)),
    title: str = "",
) -> Path:
    """Render the spheres and the collision geoms at ``qpos0`` to a PNG.

    Top row: collision geoms (opaque grey) with the spheres (translucent, one colour per body) over
    them; bottom row: the spheres alone (opaque) over faint collision geoms. One column per
    ``(azimuth, elevation)`` [deg] view. Off-screen on CPU (``MUJOCO_GL=egl`` or ``osmesa``);
    shadows, reflections and multisampling off.

    Raises:
        DescriptionError: Rendering is unavailable (no OpenGL context).
    """
    from PIL import Image, ImageDraw

    m = copy.deepcopy(model)
    coll = np.array([_is_collision(m, g) for g in range(m.ngeom)], dtype=bool)
    m.geom_matid[:] = -1
    m.vis.quality.offsamples = 0
    m.vis.global_.offwidth = max(m.vis.global_.offwidth, width)
    m.vis.global_.offheight = max(m.vis.global_.offheight, height)
    m.vis.headlight.ambient[:] = (0.4, 0.4, 0.4)
    m.vis.headlight.diffuse[:] = (0.6, 0.6, 0.6)
    m.vis.headlight.specular[:] = (0.1, 0.1, 0.1)
    m.light_active[:] = 0 if m.nlight else m.light_active
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    world = []
    for i, (b, sp) in enumerate(spheres.items()):
        c, r = (sp.centres, sp.radii) if isinstance(sp, SphereSet) else sp
        bid = _body_id(m, b)
        wc = d.xpos[bid] + np.asarray(c, float).reshape(-1, 3) @ d.xmat[bid].reshape(3, 3).T
        world += [(p, float(rr), i) for p, rr in zip(wc, np.asarray(r, float).reshape(-1))]
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for p, rr, _ in world:
        lo, hi = np.minimum(lo, p - rr), np.maximum(hi, p + rr)
    for g in np.flatnonzero(coll):
        rb = float(m.geom_rbound[g]) if m.geom_rbound[g] > 0 else 0.0
        lo, hi = np.minimum(lo, d.geom_xpos[g] - rb), np.maximum(hi, d.geom_xpos[g] + rb)
    if not np.all(np.isfinite(lo)):
        lo, hi = d.xpos.min(0) - 0.1, d.xpos.max(0) + 0.1
    radius = 0.5 * float(np.linalg.norm(hi - lo))
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.lookat[:] = 0.5 * (lo + hi)
    half = math.radians(m.vis.global_.fovy / 2)
    cam.distance = 0.8 * radius / math.sin(half) + 1e-3
    opt = mujoco.MjvOption()
    opt.geomgroup[:] = 1
    palette = np.array([[0.90, 0.25, 0.20], [0.20, 0.55, 0.90], [0.20, 0.75, 0.35],
                        [0.95, 0.65, 0.10], [0.65, 0.35, 0.85], [0.10, 0.75, 0.75]])
    renderer = _make_renderer(m, height, width)
    rows = []
    try:
        for geom_alpha, sphere_alpha in ((1.0, 0.45), (0.12, 1.0)):
            m.geom_rgba[:] = 0.0
            m.geom_rgba[coll] = (0.62, 0.62, 0.62, geom_alpha)
            row = []
            for az, el in views:
                cam.azimuth, cam.elevation = az, el
                renderer.update_scene(d, cam, opt)
                scn = renderer.scene
                scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
                scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
                scn.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
                for p, rr, i in world:
                    if scn.ngeom >= scn.maxgeom:
                        break
                    rgba = np.append(palette[i % len(palette)], sphere_alpha).astype(np.float32)
                    mujoco.mjv_initGeom(scn.geoms[scn.ngeom], int(mujoco.mjtGeom.mjGEOM_SPHERE),
                                        np.array([rr, rr, rr]), np.asarray(p, float), np.eye(3).ravel(), rgba)
                    scn.ngeom += 1
                row.append(renderer.render().copy())
            rows.append(np.concatenate(row, axis=1))
    finally:
        renderer.close()
    img = Image.fromarray(np.concatenate(rows, axis=0))
    if title:
        ImageDraw.Draw(img).text((8, 6), title, fill=(255, 255, 255))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

#: Per-model fit parameters of the shipped sphere files (``python -m dex_description.spheres --all``).
#: ``overrides``: body-name pattern -> parameters (see :func:`body_params`).
PRESETS: dict[str, dict] = {
    "ur10e": dict(
        model="robot:ur10e_shadow:arm", margin=0.015, max_spheres=10, coverage_target=0.99,
    ),
    "ur5e": dict(
        model="robot:ur5e_leap:arm", margin=0.012, max_spheres=10, coverage_target=0.99,
    ),
    "shadow_right": dict(
        model="robot:ur10e_shadow:hand", margin=0.003, max_spheres=3, coverage_target=0.98,
        overrides={
            "rh_*knuckle": {"max_spheres": 2},
            "rh_[fmrl]fmiddle": {"max_spheres": 2},
            "rh_*distal": {"max_spheres": 4},
            "rh_lfmetacarpal": {"margin": 0.006, "max_spheres": 4},
            "rh_palm": {"margin": 0.008, "max_spheres": 16},
            "rh_wrist": {"margin": 0.008, "max_spheres": 6},
            "rh_forearm": {"margin": 0.01, "max_spheres": 14},
        },
    ),
    "leap_right": dict(
        model="robot:ur5e_leap:hand", margin=0.005, max_spheres=4, coverage_target=0.98,
        fill="hull",
        overrides={"palm": {"margin": 0.006, "max_spheres": 14}},
    ),
}


def load_model(path: str | Path) -> mujoco.MjModel:
    """Compile an MJCF file; :class:`ModelFileError` naming the file when it fails."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "no such model file")
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except ValueError as exc:
        raise ModelFileError(path, f"does not compile: {exc}") from exc


def _resolve_model(arg: str) -> tuple[mujoco.MjModel, str, list[str] | None]:
    """``robot:<combo>:arm|hand`` (the *normalised* models, with the YAML's model fixes), an MJCF
    path, or a path inside the model source. Returns (model, label, bodies to fit or None = all)."""
    if arg.startswith("robot:"):
        from dex_description.compose import load_robot

        try:
            _, combo, part = arg.split(":")
        except ValueError:
            raise DescriptionError(f"expected robot:<combo>:arm|hand, got '{arg}'") from None
        robot = load_robot(combo, check=False)
        if part == "hand":
            return robot.hand_model, arg, None
        if part == "arm":
            model = robot.model
            hand_root = model.body(robot.cfg.hand.root_body).id
            hand = {b for b in range(model.nbody) if _in_subtree(model, b, hand_root)}
            arm = [b for b in bodies_with_collision(model) if model.body(b).id not in hand]
            return model, arg, arm
        raise DescriptionError(f"expected robot:<combo>:arm|hand, got '{arg}'")
    p = Path(arg)
    if not p.is_file():
        from dex_description.models import model_file

        p = model_file(arg)
    return load_model(p), arg, None


def _in_subtree(model: mujoco.MjModel, body: int, root: int) -> bool:
    while body > 0:
        if body == root:
            return True
        body = int(model.body_parentid[body])
    return False


def _default_out(name: str) -> Path:
    from dex_description.paths import config_dir

    return config_dir() / "robots" / "spheres" / f"{name}.yaml"


def _parse_value(v: str):
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def _parse_overrides(items: Sequence[str] | None) -> dict[str, dict]:
    """``PATTERN:key=value[,key=value...]`` -> {pattern: {key: value}}."""
    out: dict[str, dict] = {}
    for it in items or ():
        pat, sep, rest = it.partition(":")
        if not sep or not pat or not rest:
            raise DescriptionError(f"--override: expected PATTERN:key=value[,key=value], got '{it}'")
        upd = out.setdefault(pat, {})
        for kv in rest.split(","):
            k, sep, v = kv.partition("=")
            if not sep:
                raise DescriptionError(f"--override: expected key=value in '{it}', got '{kv}'")
            upd[k.strip()] = _parse_value(v.strip())
    return out


def _fit_one(args, name: str, log: Callable[[str], None]) -> dict:
    model, source, part_bodies = _resolve_model(args.model_xml)
    out = Path(args.out) if args.out else _default_out(name)
    overrides = _parse_overrides(args.override)
    base = {"max_spheres": args.max_spheres, "margin": args.margin, "coverage_target": args.coverage_target,
            "n_samples": args.n_samples, "n_candidates": args.n_candidates, "fill": args.fill}
    params = {"margin": args.margin, "coverage_target": args.coverage_target,
              "max_spheres_per_body": args.max_spheres, "fill": args.fill, "seed": args.seed,
              "n_samples": args.n_samples, "n_candidates": args.n_candidates,
              "report_samples": args.report_samples, "surface_tol": args.surface_tol}
    if overrides:
        params["overrides"] = overrides
    log(f"== {name}: {source}  (margin {args.margin * 1e3:.1f} mm, target {args.coverage_target:.2f}, "
        f"max {args.max_spheres}/body, fill {args.fill}"
        + (f", {len(overrides)} override(s)" if overrides else "") + ")")
    log(f"{'body':<18}{'count':>6}{'volume %':>10}{'surface %':>11}{'gap mm':>8}{'max prot mm':>13}"
        f"{'hull prot mm':>14}{'s':>7}")
    reports: dict[str, CoverageReport] = {}
    t_all = time.perf_counter()
    bodies = args.bodies or part_bodies or bodies_with_collision(model)
    spheres: dict[str, SphereSet] = {}
    for b in bodies:
        t0 = time.perf_counter()
        prm = body_params(b, base, overrides)
        s = round_spheres(fit_body_spheres(model, b, seed=args.seed, **prm))
        rep = coverage(model, b, s, args.report_samples, args.seed, args.surface_tol)
        spheres[b], reports[b] = s, rep
        log(f"{b:<18}{rep.count:>6}{100 * rep.volume:>10.1f}{100 * rep.surface:>11.1f}"
            f"{1e3 * rep.surface_max_gap:>8.1f}{1e3 * rep.max_protrusion:>13.1f}"
            f"{1e3 * rep.max_protrusion_hull:>14.1f}{time.perf_counter() - t0:>7.2f}")
    vols = {b: sum(g.volume for g in collision_geoms(model, b)) for b in bodies}
    wv = sum(reports[b].volume * vols[b] for b in bodies) / max(1e-12, sum(vols.values()))
    total = sum(len(s) for s in spheres.values())
    log(f"{'TOTAL':<18}{total:>6}{100 * wv:>10.1f}{100 * np.mean([r.surface for r in reports.values()]):>11.1f}"
        f"{1e3 * max(r.surface_max_gap for r in reports.values()):>8.1f}"
        f"{1e3 * max(r.max_protrusion for r in reports.values()):>13.1f}"
        f"{1e3 * max(r.max_protrusion_hull for r in reports.values()):>14.1f}"
        f"{time.perf_counter() - t_all:>7.2f}")
    log("  (TOTAL volume %: weighted by body volume; surface %: mean over bodies; gap, protrusions: max)")
    cmd = "python -m dex_description.spheres " + " ".join(shlex.quote(a) for a in args.argv)
    save_spheres(out, name, spheres, reports, params, command=cmd, source=source)
    log(f"wrote {out}")
    if args.image:
        img = Path(args.image)
        render_spheres(model, spheres, img, title=f"{name}: {total} spheres (top: over the collision "
                       f"geoms; bottom: spheres alone)")
        log(f"wrote {img}")
    return {"name": name, "total": total, "volume": wv, "out": out}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dexgrasp-description fit-spheres",
                                description="Fit collision spheres to a MuJoCo model's collision geoms.")
    p.add_argument("--model-xml", help="MJCF file, or a path below the model source dir "
                   "(e.g. grippers/shadow/assets/right_hand.xml)")
    p.add_argument("--name", help="model name stored in the YAML (e.g. shadow_right)")
    p.add_argument("--out", help="output YAML (default config/robots/spheres/<name>.yaml)")
    p.add_argument("--margin", type=float, default=0.002, help="allowed protrusion [m] (default 0.002)")
    p.add_argument("--max-spheres", type=int, default=12, help="max spheres per body (default 12)")
    p.add_argument("--coverage-target", type=float, default=0.98, help="volume coverage target (default 0.98)")
    p.add_argument("--fill", choices=("none", "hull"), default="none",
                   help="'hull': spheres may fill hollows of a body's convex hull (see fit_spheres)")
    p.add_argument("--override", action="append", metavar="PATTERN:key=value[,key=value]",
                   help="per-body parameters, e.g. 'rh_palm:margin=0.007,max_spheres=14' (fnmatch pattern)")
    p.add_argument("--n-samples", type=int, default=6000, help="volume samples per body for the fit")
    p.add_argument("--n-candidates", type=int, default=2000, help="candidate centres per body")
    p.add_argument("--report-samples", type=int, default=20000, help="samples per body for the report")
    p.add_argument("--surface-tol", type=float, default=0.001, help="surface coverage tolerance [m]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bodies", nargs="*", help="only these bodies")
    p.add_argument("--image", help="also render a PNG of the spheres over the collision geoms")
    p.add_argument("--preset", choices=sorted(PRESETS), help="use a shipped model's parameters")
    p.add_argument("--all", action="store_true", help="regenerate every preset (YAML + PNG)")
    return p


def _preset_args(name: str) -> list[str]:
    pr = PRESETS[name]
    a = ["--model-xml", pr["model"], "--name", name, "--margin", str(pr["margin"]),
         "--max-spheres", str(pr["max_spheres"]), "--coverage-target", str(pr["coverage_target"]),
         "--fill", pr.get("fill", "none")]
    for pat, upd in pr.get("overrides", {}).items():
        a += ["--override", pat + ":" + ",".join(f"{k}={v}" for k, v in upd.items())]
    return a


def main_fit(argv: Sequence[str] | None = None, log: Callable[[str], None] | None = None) -> int:
    """Command-line entry: fit, report (a table per body, as it goes), save (and render).

    Returns the exit status (0 ok, 1 error, 2 usage). Examples::

        python -m dex_description.spheres --all        # every preset -> config/ + docs/images/
        python -m dex_description.spheres --preset shadow_right --image /tmp/shadow.png
        python -m dex_description.spheres --model-xml my.xml --name mine --out /tmp/mine.yaml \\
            --margin 0.003 --max-spheres 6 --override 'base_link:margin=0.01'

    With ``--preset``/``--all`` the preset's options come first, so options given on the command
    line (e.g. ``--out``, ``--n-samples``, more ``--override``) add to or replace them.
    """
    log = log or (lambda s: print(s, flush=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        runs = []
        if args.all or args.preset:
            names = sorted(PRESETS) if args.all else [args.preset]
            rest, skip = [], False
            for a in argv:
                if skip:
                    skip = False
                elif a == "--preset":
                    skip = True
                elif a != "--all" and not a.startswith("--preset="):
                    rest.append(a)
            for n in names:
                extra = list(rest)
                if args.all:
                    from dex_description.paths import repo_root

                    root = repo_root() or Path.cwd()
                    extra += ["--image", str(root / "docs" / "images" / f"spheres_{n}.png")]
                a = _parser().parse_args(_preset_args(n) + extra)
                pre_ov = _parse_overrides(a.override)
                a.argv = ["--preset", n] + rest
                a.override = [f"{p}:" + ",".join(f"{k}={v}" for k, v in u.items()) for p, u in pre_ov.items()]
                runs.append(_fit_one(a, n, log))
        else:
            if not args.model_xml or not args.name:
                log("error: --model-xml and --name are required (or use --preset/--all)")
                return 2
            args.argv = argv
            runs.append(_fit_one(args, args.name, log))
        if len(runs) > 1:
            log("summary: " + ", ".join(f"{r['name']} {r['total']} spheres, volume {100 * r['volume']:.1f}%"
                                        for r in runs))
    except DescriptionError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main_fit())
