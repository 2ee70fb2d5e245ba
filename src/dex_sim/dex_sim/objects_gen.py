"""Generate the built-in object set: procedural household shapes of graspable size, reproducibly.

::

    python -m dex_sim.objects_gen --out config/objects/builtin --seed 0
    python -m dex_sim.objects_gen --out /tmp/objs --only mug_01 bowl_02      # a subset
    python -m dex_sim.objects_gen --sheet docs/images/sim_objects.png       # + contact sheet

Every object's dimensions come from ``numpy.random.default_rng([seed, index])``, so one object
regenerates identically on its own; meshes are written with fixed formatting (byte-for-byte
reproducible), then decomposed with :func:`dex_sim.objects.convex_parts`' parameters (CoACD,
seeded) into ``convex/<name>.obj``. Train/test split: per category one object in four is
``test`` (chosen by the seed), i.e. 75/25 stratified by category.

Shapes (all watertight, z up, resting on z = 0, centred in x/y; metres): boxes of several aspect
ratios, cans and cylinders, bottles (body + neck + cap), bowls and cups and mugs with handles
(concave), balls, ellipsoids and eggs, cones and frustums, tori, L/T/U/plus blocks, hollow tubes,
bananas (curved tapered capsules).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dex_sim.objects import (
    DecompositionParams,
    ObjectSpec,
    decompose,
    write_parts,
)

CATEGORY_DENSITY = {  # [kg/m^3] effective density of the solid material
    "box": 450.0, "can": 700.0, "bottle": 600.0, "bowl": 1100.0, "mug": 1900.0, "cup": 1000.0,
    "ball": 350.0, "ellipsoid": 500.0, "cone": 500.0, "torus": 700.0, "block": 600.0, "tube": 1000.0,
    "banana": 900.0,
}
MASS_RANGE = (0.02, 0.5)  # [kg]


# --------------------------------------------------------------------------------------------
# Mesh primitives (vertices (V, 3) float64, faces (F, 3) int64, outward CCW)


def _orient(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip all faces if the signed volume is negative (closed meshes)."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    vol = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0
    return (v, f[:, ::-1].copy()) if vol < 0 else (v, f)


def revolve(profile: list[tuple[float, float]], sections: int = 32, closed_loop: bool = False):
    """Surface of revolution about z of a (r, z) polyline.

    Open profile: must start and end on the axis (r = 0); those points become single vertices.
    ``closed_loop``: the profile is a closed loop with r > 0 everywhere (a ring, e.g. a tube wall).
    """
    prof = np.asarray(profile, dtype=np.float64)
    ang = 2 * np.pi * np.arange(sections) / sections
    cs, sn = np.cos(ang), np.sin(ang)
    verts, ids = [], []
    for r, z in prof:
        if r <= 1e-12:
            ids.append([len(verts)] * sections)
            verts.append((0.0, 0.0, z))
        else:
            ids.append(list(range(len(verts), len(verts) + sections)))
            verts.extend(zip(r * cs, r * sn, np.full(sections, z)))
    faces = []
    n = len(prof)
    segs = [(i, (i + 1) % n) for i in range(n)] if closed_loop else [(i, i + 1) for i in range(n - 1)]
    for i, j in segs:
        for k in range(sections):
            k2 = (k + 1) % sections
            a, b, c, d = ids[i][k], ids[i][k2], ids[j][k2], ids[j][k]
            for tri in ((a, b, c), (a, c, d)):
                if len(set(tri)) == 3:
                    faces.append(tri)
    return _orient(np.array(verts), np.array(faces, dtype=np.int64))


def sweep(path: np.ndarray, radii: np.ndarray, sections: int = 20, cap_rings: int = 4, closed: bool = False):
    """A tube of circular cross-section along ``path`` (N, 3) with radii (N,); rounded ends
    (hemispherical, ``cap_rings`` rings) unless ``closed`` (a ring: the path wraps around)."""
    path = np.asarray(path, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    n = len(path)
    tang = np.gradient(path, axis=0) if not closed else (np.roll(path, -1, 0) - np.roll(path, 1, 0))
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0]) if abs(tang[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tang[0], ref)
    normal /= np.linalg.norm(normal)
    normals = []
    for t in tang:  # parallel transport of the first normal
        normal = normal - t * (normal @ t)
        normal /= np.linalg.norm(normal)
        normals.append(normal)
    normals = np.array(normals)
    binorm = np.cross(tang, normals)
    ang = 2 * np.pi * np.arange(sections) / sections
    rings = [path[i] + radii[i] * (np.cos(ang)[:, None] * normals[i] + np.sin(ang)[:, None] * binorm[i]) for i in range(n)]

    if not closed:  # hemispherical caps: extra shrinking rings beyond both ends, then a tip vertex
        start, end = [], []
        for j in range(1, cap_rings + 1):
            th = j / (cap_rings + 1) * np.pi / 2
            start.append((path[0] - tang[0] * radii[0] * np.sin(th), radii[0] * np.cos(th), normals[0], binorm[0]))
            end.append((path[-1] + tang[-1] * radii[-1] * np.sin(th), radii[-1] * np.cos(th), normals[-1], binorm[-1]))
        rings = ([c + r * (np.cos(ang)[:, None] * nn + np.sin(ang)[:, None] * bb) for c, r, nn, bb in start[::-1]]
                 + rings + [c + r * (np.cos(ang)[:, None] * nn + np.sin(ang)[:, None] * bb) for c, r, nn, bb in end])
    verts = np.concatenate(rings)
    m = len(rings)
    faces = []
    pairs = [(i, (i + 1) % m) for i in range(m)] if closed else [(i, i + 1) for i in range(m - 1)]
    for i, j in pairs:
        for k in range(sections):
            k2 = (k + 1) % sections
            a, b, c, d = i * sections + k, i * sections + k2, j * sections + k2, j * sections + k
            faces += [(a, b, c), (a, c, d)]
    if not closed:
        tip0 = path[0] - tang[0] * radii[0]
        tip1 = path[-1] + tang[-1] * radii[-1]
        i0, i1 = len(verts), len(verts) + 1
        verts = np.vstack([verts, tip0, tip1])
        last = (m - 1) * sections
        for k in range(sections):
            k2 = (k + 1) % sections
            faces.append((i0, k2, k))
            faces.append((i1, last + k, last + k2))
    return _orient(verts, np.array(faces, dtype=np.int64))


def rect_blocks(xs, ys, zs, occ: np.ndarray):
    """Closed surface of the union of cells of a rectilinear grid (coordinates ``xs``, ``ys``, ``zs``,
    occupancy ``occ`` (nx, ny, nz) bool); grid nodes are shared, so the surface is watertight."""
    xs, ys, zs = (np.asarray(a, dtype=np.float64) for a in (xs, ys, zs))
    nx, ny, nz = occ.shape
    pad = np.zeros((nx + 2, ny + 2, nz + 2), dtype=bool)
    pad[1:-1, 1:-1, 1:-1] = occ
    index: dict[tuple[int, int, int], int] = {}
    verts: list[tuple[float, float, float]] = []

    def vid(i, j, k):
        key = (i, j, k)
        if key not in index:
            index[key] = len(verts)
            verts.append((xs[i], ys[j], zs[k]))
        return index[key]

    faces = []
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                if not occ[i, j, k]:
                    continue
                for axis in range(3):
                    for side in (0, 1):
                        nb = [i + 1, j + 1, k + 1]
                        nb[axis] += 1 if side else -1
                        if pad[tuple(nb)]:
                            continue
                        c = [i, j, k]
                        c[axis] += side
                        u, w = [a for a in range(3) if a != axis]
                        quad = []
                        for du, dw in ((0, 0), (1, 0), (1, 1), (0, 1)):
                            p = list(c)
                            p[u] += du
                            p[w] += dw
                            quad.append(vid(*p))
                        # outward: (u x w) = +axis for cyclic (axis, u, w); flip for the low side
                        cyclic = (u - axis) % 3 == 1
                        if cyclic != bool(side):
                            quad = quad[::-1]
                        faces += [(quad[0], quad[1], quad[2]), (quad[0], quad[2], quad[3])]
    v = np.array(verts)
    f = np.array(faces, dtype=np.int64)
    return _subdivide_long(v, f)


def _subdivide_long(v, f):
    """Rectilinear blocks have T-junction-free shared nodes already; nothing to do (kept for clarity)."""
    return _orient(v, f)


def ellipsoid(a: float, b: float, c: float, subdivisions: int = 3):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    return _orient(np.asarray(s.vertices) * [a, b, c], np.asarray(s.faces, dtype=np.int64))


def box(x: float, y: float, z: float):
    occ = np.ones((1, 1, 1), dtype=bool)
    return rect_blocks([-x / 2, x / 2], [-y / 2, y / 2], [0.0, z], occ)


def concat(*meshes):
    vs, fs, off = [], [], 0
    for v, f in meshes:
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    return np.vstack(vs), np.vstack(fs)


# --------------------------------------------------------------------------------------------
# Shape families: rng -> (vertices, faces)


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def make_box(rng, kind):
    dims = {"cube": lambda: [_u(rng, .045, .06)] * 3,
            "flat": lambda: [_u(rng, .09, .12), _u(rng, .06, .075), _u(rng, .02, .03)],
            "tall": lambda: [_u(rng, .04, .05), _u(rng, .04, .05), _u(rng, .10, .13)],
            "small": lambda: [_u(rng, .03, .04), _u(rng, .022, .03), _u(rng, .05, .07)]}[kind]()
    return box(*dims)


def make_can(rng, kind):
    r, h = {"soda": (_u(rng, .031, .034), _u(rng, .11, .125)), "food": (_u(rng, .035, .042), _u(rng, .07, .09)),
            "puck": (_u(rng, .035, .045), _u(rng, .03, .045)), "marker": (_u(rng, .011, .016), _u(rng, .11, .14))}[kind]
    ch = min(0.004, r * 0.2)
    return revolve([(0, 0), (r - ch, 0), (r, ch), (r, h - ch), (r - ch, h), (0, h)], sections=32)


def make_bottle(rng, kind):
    rb = _u(rng, .025, .035)
    hb = _u(rng, .09, .14) if kind != "small" else _u(rng, .06, .08)
    rn = _u(rng, .010, .014)
    hn = _u(rng, .03, .05)
    sh = _u(rng, .02, .035)  # shoulder height
    rc = rn + 0.002
    prof = [(0, 0), (rb - .004, 0), (rb, .004), (rb, hb)]
    for t in np.linspace(0, 1, 6)[1:]:  # rounded shoulder
        prof.append((rn + (rb - rn) * np.cos(t * np.pi / 2), hb + sh * np.sin(t * np.pi / 2)))
    top = hb + sh + hn
    prof += [(rn, top - .012), (rc, top - .012), (rc, top), (0, top)]
    if kind == "square":
        return revolve(prof, sections=8)
    return revolve(prof, sections=32)


def _vessel(outer: list[tuple[float, float]], wall: float, base: float, sections: int = 32):
    """Open-top vessel (bowl, cup, mug body) from its outer wall curve ``outer`` [(r, z)], bottom
    (r0, 0) to rim (r1, h): outer wall up, rim, inner wall (offset by ``wall`` in r) down to the
    inner bottom at z = ``base``."""
    outer = [(float(r), float(z)) for r, z in outer]
    rs = np.array([p[0] for p in outer])
    zs = np.array([p[1] for p in outer])
    r_base = float(np.interp(base, zs, rs))
    inner = [(r - wall, z) for r, z in outer if z > base + 1e-6][::-1] + [(r_base - wall, base)]
    prof = [(0.0, 0.0)] + outer + inner + [(0.0, base)]
    out = [prof[0]]
    for p in prof[1:]:
        if abs(p[0] - out[-1][0]) > 1e-9 or abs(p[1] - out[-1][1]) > 1e-9:
            out.append(p)
    return revolve(out, sections=sections)


def make_bowl(rng, kind):
    r = _u(rng, .045, .07)
    h = _u(rng, .035, .06)
    rb = r * _u(rng, 0.45, 0.6)
    ts = np.linspace(0, 1, 9)
    outer = [(rb + (r - rb) * np.sin(t * np.pi / 2), h * (1 - np.cos(t * np.pi / 2))) for t in ts]
    return _vessel(outer, wall=_u(rng, .005, .007), base=_u(rng, .005, .008))


def make_cup(rng, kind):
    rt = _u(rng, .035, .045)
    rb = rt * _u(rng, 0.65, 0.8)
    h = _u(rng, .08, .11)
    outer = [(rb + (rt - rb) * t, h * t) for t in np.linspace(0, 1, 5)]
    return _vessel(outer, wall=_u(rng, .0025, .0035), base=.004)


def _handle(r_body, h, rng):
    """A C-shaped handle on +x: an arc of a tube whose ends sink 3 mm into the body wall."""
    hh = h * _u(rng, 0.5, 0.65)  # handle height span
    out = _u(rng, .025, .032)  # how far it sticks out
    rt = _u(rng, .0045, .006)  # tube radius
    zc = h * 0.5
    ts = np.linspace(-np.pi / 2, np.pi / 2, 13)
    x = r_body + rt - 0.003 + out * np.cos(ts) ** 0.8
    z = zc + hh / 2 * np.sin(ts)
    path = np.stack([x, np.zeros_like(x), z], 1)
    return sweep(path, np.full(len(path), rt), sections=16, cap_rings=2)


def make_mug(rng, kind):
    r = _u(rng, .035, .043)
    h = _u(rng, .08, .10)
    body = _vessel([(r, 0.0), (r, h)], wall=_u(rng, .004, .005), base=.006)
    return concat(body, _handle(r, h, rng))


def make_ball(rng, kind):
    r = {"small": _u(rng, .02, .025), "medium": _u(rng, .03, .035), "large": _u(rng, .038, .045), "tiny": _u(rng, .015, .018)}[kind]
    v, f = ellipsoid(r, r, r, subdivisions=3)
    return v, f


def make_ellipsoid(rng, kind):
    if kind == "egg":
        a = _u(rng, .021, .025)
        h = _u(rng, .055, .062)
        ts = np.linspace(0, np.pi, 14)
        prof = [(a * np.sin(t) * (1 + 0.12 * np.cos(t)), h / 2 * (1 - np.cos(t))) for t in ts]
        prof[0], prof[-1] = (0.0, 0.0), (0.0, h)
        return revolve(prof, sections=24)
    a, b, c = {"flat": (_u(rng, .04, .05), _u(rng, .03, .035), _u(rng, .015, .02)),
               "long": (_u(rng, .055, .065), _u(rng, .022, .027), _u(rng, .022, .027)),
               "round": (_u(rng, .035, .04), _u(rng, .028, .033), _u(rng, .025, .03))}[kind]
    return ellipsoid(a, b, c, subdivisions=3)


def make_cone(rng, kind):
    if kind == "cone":
        r, h = _u(rng, .03, .04), _u(rng, .06, .09)
        return revolve([(0, 0), (r, 0), (0.002, h), (0, h)], sections=32)
    if kind == "frustum":
        r0, r1, h = _u(rng, .035, .045), _u(rng, .015, .025), _u(rng, .05, .08)
        return revolve([(0, 0), (r0, 0), (r1, h), (0, h)], sections=32)
    if kind == "inverted":
        r0, r1, h = _u(rng, .018, .024), _u(rng, .035, .042), _u(rng, .06, .08)
        return revolve([(0, 0), (r0, 0), (r1, h), (0, h)], sections=32)
    r, h = _u(rng, .03, .038), _u(rng, .035, .05)  # pyramid (square)
    return revolve([(0, 0), (r, 0), (0.002, h), (0, h)], sections=4)


def make_torus(rng, kind):
    R = {"ring": _u(rng, .03, .035), "donut": _u(rng, .032, .04), "thin": _u(rng, .035, .045), "thick": _u(rng, .025, .03)}[kind]
    r = {"ring": _u(rng, .008, .01), "donut": _u(rng, .014, .017), "thin": _u(rng, .006, .008), "thick": _u(rng, .013, .016)}[kind]
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    path = np.stack([R * np.cos(t), R * np.sin(t), np.zeros_like(t)], 1)
    return sweep(path, np.full(len(t), r), sections=16, closed=True)


def make_block(rng, kind):
    a = _u(rng, .02, .03)  # bar thickness
    L = _u(rng, .07, .10)
    depth = _u(rng, .025, .035)
    if kind == "L":
        xs, zs = [0, a, L * 0.7], [0, a, L]
        occ = np.array([[[1, 1]], [[1, 0]]], dtype=bool)  # (x, y, z)
    elif kind == "T":
        xs, zs = [0, (L - a) / 2, (L + a) / 2, L], [0, L * 0.8 - a, L * 0.8]
        occ = np.array([[[0, 1]], [[1, 1]], [[0, 1]]], dtype=bool)
    elif kind == "U":
        gap = _u(rng, .02, .035)
        xs, zs = [0, a, a + gap, 2 * a + gap], [0, a, L * 0.7]
        occ = np.array([[[1, 1]], [[1, 0]], [[1, 1]]], dtype=bool)
    else:  # plus
        xs, zs = [0, (L - a) / 2, (L + a) / 2, L], [0, (L - a) / 2, (L + a) / 2, L]
        occ = np.array([[[0, 1, 0]], [[1, 1, 1]], [[0, 1, 0]]], dtype=bool)
    return rect_blocks(xs, [0, depth], zs, occ)


def make_tube(rng, kind):
    ro = {"short": _u(rng, .025, .03), "long": _u(rng, .018, .022), "wide": _u(rng, .032, .038), "thin": _u(rng, .012, .015)}[kind]
    h = {"short": _u(rng, .05, .07), "long": _u(rng, .10, .13), "wide": _u(rng, .04, .05), "thin": _u(rng, .08, .11)}[kind]
    ri = ro - _u(rng, .003, .005)
    return revolve([(ri, 0), (ro, 0), (ro, h), (ri, h)], sections=32, closed_loop=True)


def make_banana(rng, kind):
    R = _u(rng, .09, .14)  # arc radius
    ang = np.deg2rad(_u(rng, 55, 85) if kind != "straight" else _u(rng, 10, 20))
    rmax = _u(rng, .016, .02)
    if kind == "small":
        R, rmax = R * 0.75, rmax * 0.8
    if kind == "straight":  # a gently curved capsule, 10-15 cm long
        R = _u(rng, .10, .15) / ang
    t = np.linspace(-ang / 2, ang / 2, 17)
    path = np.stack([R * np.sin(t), np.zeros_like(t), -R * np.cos(t)], 1)
    radii = rmax * (0.55 + 0.45 * np.cos(np.linspace(-np.pi / 2, np.pi / 2, len(t))))
    return sweep(path, radii, sections=16, cap_rings=3)


@dataclass(frozen=True)
class Family:
    category: str
    make: Callable
    kinds: tuple[str, str, str, str]


FAMILIES = (
    Family("box", make_box, ("cube", "flat", "tall", "small")),
    Family("can", make_can, ("soda", "food", "puck", "marker")),
    Family("bottle", make_bottle, ("round", "slim", "square", "small")),
    Family("bowl", make_bowl, ("a", "b", "c", "d")),
    Family("mug", make_mug, ("a", "b", "c", "d")),
    Family("cup", make_cup, ("a", "b", "c", "d")),
    Family("ball", make_ball, ("small", "medium", "large", "tiny")),
    Family("ellipsoid", make_ellipsoid, ("egg", "flat", "long", "round")),
    Family("cone", make_cone, ("cone", "frustum", "inverted", "pyramid")),
    Family("torus", make_torus, ("ring", "donut", "thin", "thick")),
    Family("block", make_block, ("L", "T", "U", "plus")),
    Family("tube", make_tube, ("short", "long", "wide", "thin")),
    Family("banana", make_banana, ("a", "b", "small", "straight")),
)


def catalogue() -> list[tuple[str, Family, str, int]]:
    """(name, family, kind, index) of every built-in object, in order."""
    out, idx = [], 0
    for fam in FAMILIES:
        for j, kind in enumerate(fam.kinds):
            out.append((f"{fam.category}_{j + 1:02d}", fam, kind, idx))
            idx += 1
    return out


def normalise(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge duplicate vertices, rest on z = 0, centre the x/y bounding box."""
    import trimesh

    m = trimesh.Trimesh(v, f, process=True)
    m.merge_vertices()
    m.remove_unreferenced_vertices()
    v = np.asarray(m.vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    v = v - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return v, np.asarray(m.faces, dtype=np.int64)


def obj_text(v: np.ndarray, f: np.ndarray, header: str) -> str:
    lines = [f"# {header}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.round(v, 6) + 0.0]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    return "\n".join(lines) + "\n"


def generate_object(name: str, fam: Family, kind: str, index: int, seed: int):
    """(vertices, faces, mass_kg) of one built-in object."""
    import trimesh

    rng = np.random.default_rng([seed, index])
    v, f = fam.make(rng, kind)
    v, f = normalise(v, f)
    mesh = trimesh.Trimesh(v, f, process=False)
    if not mesh.is_watertight:
        raise RuntimeError(f"generator bug: {name} is not watertight")
    vol = abs(float(mesh.volume))
    mass = float(np.clip(round(vol * CATEGORY_DENSITY[fam.category], 3), *MASS_RANGE))
    return v, f, mass


def test_split(seed: int) -> dict[str, int]:
    """Per category, the index (0-3) of the object that goes to the test split."""
    rng = np.random.default_rng([seed, 10_000])
    return {fam.category: int(rng.integers(0, len(fam.kinds))) for fam in FAMILIES}


def generate(out: Path, seed: int = 0, only: list[str] | None = None, decompose_parts: bool = True,
             params: DecompositionParams | None = None, log: Callable[[str], None] = print) -> list[ObjectSpec]:
    """Write meshes, convex parts and ``objects.yaml`` into ``out``. Returns the specs written."""
    params = params or DecompositionParams()
    out = Path(out)
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    (out / "convex").mkdir(parents=True, exist_ok=True)
    test_idx = test_split(seed)
    cat = catalogue()
    todo = [c for c in cat if only is None or c[0] in only]
    specs = []
    entries = []
    t_all = time.perf_counter()
    for i, (name, fam, kind, index) in enumerate(cat):
        split = "test" if index % 4 == test_idx[fam.category] else "train"
        mesh_rel, parts_rel = f"meshes/{name}.obj", f"convex/{name}.obj"
        if (name, fam, kind, index) in todo:
            t0 = time.perf_counter()
            v, f, mass = generate_object(name, fam, kind, index, seed)
            mesh_path = out / mesh_rel
            mesh_path.write_text(obj_text(v, f, f"dexgrasp built-in object {name} ({fam.category}/{kind}), seed {seed}, metres"))
            n_parts = 0
            if decompose_parts:
                sha = hashlib.sha256(mesh_path.read_bytes()).hexdigest()
                parts = decompose(v, f, params, name)
                write_parts(out / parts_rel, parts, sha, params)
                n_parts = len(parts)
            log(f"[{todo.index((name, fam, kind, index)) + 1}/{len(todo)}] {name}: {len(f)} faces, {mass:.3f} kg, "
                f"{n_parts} convex part(s), {split} ({time.perf_counter() - t0:.1f} s, total {time.perf_counter() - t_all:.0f} s)")
        else:
            _, _, mass = generate_object(name, fam, kind, index, seed)
        entries.append((name, mesh_rel, fam.category, mass, split, parts_rel))
        specs.append(ObjectSpec(name, (out / mesh_rel).resolve(), fam.category, mass, split,
                                convex_parts_file=(out / parts_rel).resolve()))
    lines = [
        "# dexgrasp built-in object set: procedural household shapes (generated; do not edit by hand).",
        f"# Regenerate: python -m dex_sim.objects_gen --out config/objects/builtin --seed {seed}",
        "# Metres, z up, each mesh resting on z = 0 and centred in x/y. convex_parts: shipped CoACD",
        "# decomposition (header records the mesh SHA-256 and parameters). Split: 75/25 per category.",
        "objects:",
    ]
    for name, mesh_rel, category, mass, split, parts_rel in entries:
        lines.append(f"  - {{name: {name}, mesh: {mesh_rel}, category: {category}, mass_kg: {mass:.3f}, "
                     f"split: {split}, convex_parts: {parts_rel}}}")
    (out / "objects.yaml").write_text("\n".join(lines) + "\n")
    return specs


def contact_sheet(objset, path: Path, tile: int = 128, cols: int = 8) -> None:
    """PNG grid: each object rendered twice (mesh left, convex parts in colours right), labelled."""
    import mujoco
    from PIL import Image, ImageDraw

    from dex_sim.objects import convex_parts, load_mesh

    objs = list(objset)
    rows = (len(objs) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * 2 * tile, rows * (tile + 14)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    palette = np.array([[.9, .3, .3], [.3, .7, .3], [.3, .4, .9], [.9, .7, .2], [.6, .3, .8], [.2, .8, .8], [.9, .5, .7], [.5, .5, .5]])
    for n, spec in enumerate(objs):
        v, f = load_mesh(spec)
        parts = convex_parts(spec)
        size = float(np.max(v.max(0) - v.min(0)))
        s = mujoco.MjSpec()
        s.visual.global_.offwidth = 2 * tile
        s.visual.global_.offheight = tile
        s.visual.headlight.ambient = [0.4, 0.4, 0.4]
        m = s.add_mesh()
        m.name = "obj"
        m.uservert = v.reshape(-1).tolist()
        m.userface = f.reshape(-1).tolist()
        g = s.worldbody.add_geom()
        g.type = mujoco.mjtGeom.mjGEOM_MESH
        g.meshname = "obj"
        g.rgba = [0.8, 0.75, 0.65, 1]
        g.pos = [-size * 0.8, 0, 0]
        for k, p in enumerate(parts):
            pm = s.add_mesh()
            pm.name = f"p{k}"
            pm.uservert = p.reshape(-1).tolist()
            pg = s.worldbody.add_geom()
            pg.type = mujoco.mjtGeom.mjGEOM_MESH
            pg.meshname = f"p{k}"
            pg.rgba = list(palette[k % len(palette)]) + [1]
            pg.pos = [size * 0.8, 0, 0]
        light = s.worldbody.add_light()
        light.pos = [0.3, -0.5, 1.0]
        light.dir = [-0.3, 0.5, -1.0]
        cam = s.worldbody.add_camera()
        cam.name = "c"
        d = size * 2.4 + 0.05
        eye = np.array([0.0, -d, d * 0.7 + v[:, 2].max() * 0.5])
        tgt = np.array([0.0, 0.0, v[:, 2].max() * 0.4])
        zc = eye - tgt
        zc /= np.linalg.norm(zc)
        xc = np.cross([0, 0, 1.0], zc)
        xc /= np.linalg.norm(xc)
        yc = np.cross(zc, xc)
        q = np.zeros(4)
        mujoco.mju_mat2Quat(q, np.stack([xc, yc, zc], 1).reshape(-1))
        cam.pos = eye
        cam.quat = q
        cam.fovy = 40
        model = s.compile()
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        with mujoco.Renderer(model, tile, 2 * tile) as r:
            r.update_scene(data, "c")
            img = r.render()
        x0, y0 = (n % cols) * 2 * tile, (n // cols) * (tile + 14)
        sheet.paste(Image.fromarray(img), (x0, y0))
        draw.text((x0 + 4, y0 + tile), f"{spec.name} {spec.mass_kg * 1000:.0f} g {len(parts)}p {spec.split}", fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dex_sim.objects_gen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="config/objects/builtin")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="generate only these objects (objects.yaml still lists all)")
    parser.add_argument("--no-decompose", action="store_true", help="skip the convex decomposition")
    parser.add_argument("--sheet", default=None, help="also write a contact-sheet PNG here")
    args = parser.parse_args(argv)
    generate(Path(args.out), args.seed, args.only, not args.no_decompose)
    if args.sheet:
        from dex_sim.objects import load_object_dir

        contact_sheet(load_object_dir(args.out), Path(args.sheet))
        print(f"wrote {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
