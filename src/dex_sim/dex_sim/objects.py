"""Object sets: ``objects.yaml`` + meshes -> typed, validated specs, meshes and collision parts.

Format of a set (a directory)::

    # objects.yaml -- metres, z up, each mesh resting on z = 0 and centred in x/y
    auto_center: false            # optional: true = translate meshes onto z = 0 / x-y centre on load
    objects:
      - name: mug_01              # unique, [A-Za-z0-9_.-]
        mesh: meshes/mug_01.obj   # relative to the set directory; .obj or .stl
        category: mug
        mass_kg: 0.25             # (0, 10]
        split: train              # optional: train | test (default train)
        friction: 0.6             # optional: sliding, or [sliding, torsional, rolling] (default 0.6 0.02 0.0001)
        convex_parts: convex/mug_01.obj   # optional: shipped decomposition (see below)

"Centred in x/y" means the centre of the axis-aligned bounding box; "resting on z = 0" means the
lowest vertex is at z = 0. Both within :data:`PLACEMENT_TOL` [m]; otherwise
:class:`ObjectMeshError`, unless the set says ``auto_center: true`` (then :func:`load_mesh`
translates the vertices; documented auto-fix).

Collision geometry (:func:`convex_parts`): each connected component of the mesh whose volume is
at least :attr:`DecompositionParams.convex_ratio` of its convex hull's is used as its hull;
other (concave) components are decomposed with CoACD (MIT licence, ``pip install coacd``),
seeded, so results are deterministic. Results are cached on disk, keyed by the mesh file's
SHA-256 and the parameters, in ``$DEXGRASP_CACHE_DIR`` or ``~/.cache/dexgrasp/objects``. A set
may ship decompositions (``convex_parts``: a multi-object OBJ whose header records the mesh
SHA-256 and parameters); they are used when the header matches the mesh, so nothing slow
happens at run time. Non-watertight meshes get one convex hull and a :class:`ObjectMeshWarning`.

Built-in sets: ``"builtin"`` (all), ``"builtin/train"``, ``"builtin/test"`` =
``config/objects/builtin`` (regenerate with ``python -m dex_sim.objects_gen``).

CLI::

    python -m dex_sim.objects check builtin          # load and validate every mesh
    python -m dex_sim.objects decompose path/to/set  # fill the decomposition cache, with progress
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml
from dex_description.errors import DescriptionError
from dex_description.paths import config_dir

PLACEMENT_TOL = 1e-3  # [m] resting-on-z=0 and x/y-centring tolerance
DEFAULT_FRICTION = (0.6, 0.02, 0.0001)  # sliding, torsional [m], rolling [m]
MIN_EXTENT = 1e-3  # [m] a mesh smaller than this along any axis is degenerate
MAX_MASS_KG = 10.0
BUILTIN_PREFIX = "builtin"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
PARTS_MAGIC = "# dexgrasp convex parts v1"


class ObjectError(DescriptionError):
    """Base class of object-set errors."""


class ObjectSetError(ObjectError):
    """An ``objects.yaml`` is missing or malformed.

    Attributes:
        path: The YAML file (or set directory).
        field: Dotted field, e.g. ``objects[3].mass_kg``.
    """

    def __init__(self, path: str | Path, field: str, message: str):
        self.path = Path(path)
        self.field = field
        super().__init__(f"{self.path}: field '{field}': {message}")


class ObjectMeshError(ObjectError):
    """A mesh file is missing, unreadable, empty/degenerate or badly placed.

    Attributes:
        path: The mesh file.
        object_name: The object it belongs to.
    """

    def __init__(self, path: str | Path, object_name: str, message: str):
        self.path = Path(path)
        self.object_name = object_name
        super().__init__(f"{self.path} (object '{object_name}'): {message}")


class UnknownObjectError(ObjectError):
    """An object or set name that does not exist."""


class ObjectMeshWarning(UserWarning):
    """A mesh is usable but imperfect (e.g. not watertight: its convex hull is used for collision)."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a set.

    Attributes:
        name: Unique name in its set.
        mesh: Absolute path of the mesh (.obj/.stl) [m], z up, resting on z = 0, centred in x/y.
        category: Free-form category (``mug``, ``box``, ...).
        mass_kg: Mass [kg].
        split: ``train`` or ``test``.
        friction: (sliding [-], torsional [m], rolling [m]) MuJoCo friction.
        convex_parts_file: Absolute path of a shipped decomposition, or None.
        auto_center: Translate the mesh onto z = 0 and the x/y centre on load.
    """

    name: str
    mesh: Path
    category: str
    mass_kg: float
    split: str = "train"
    friction: tuple[float, float, float] = DEFAULT_FRICTION
    convex_parts_file: Path | None = None
    auto_center: bool = False


@dataclass(frozen=True)
class ObjectSet:
    """A validated object set.

    Attributes:
        name: ``builtin``, ``builtin/train``, ... or the directory path as given.
        root: The set directory (holds ``objects.yaml``).
        objects: The specs, in file order.
    """

    name: str
    root: Path
    objects: tuple[ObjectSpec, ...]

    def get(self, name: str) -> ObjectSpec:
        """The object called ``name``; :class:`UnknownObjectError` lists the known names."""
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise UnknownObjectError(f"no object '{name}' in set '{self.name}' ({self.root}); objects: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    def split(self, which: str) -> ObjectSet:
        """The ``train`` or ``test`` subset."""
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {which!r}")
        base = self.name.split("/")[0] if self.name.startswith(BUILTIN_PREFIX) else self.name
        return ObjectSet(f"{base}/{which}", self.root, tuple(o for o in self.objects if o.split == which))

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self):
        return iter(self.objects)


# --------------------------------------------------------------------------------------------
# objects.yaml


def builtin_dir() -> Path:
    """``config/objects/builtin`` of this installation."""
    return config_dir() / "objects" / "builtin"


def _friction(value, path: Path, where: str) -> tuple[float, float, float]:
    if value is None:
        return DEFAULT_FRICTION
    vals = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        arr = np.asarray(vals, dtype=np.float64)
    except (TypeError, ValueError):
        raise ObjectSetError(path, where, f"must be a number or a list of 1-3 numbers, got {value!r}") from None
    if arr.ndim != 1 or not 1 <= arr.size <= 3 or not np.all(np.isfinite(arr)) or np.any(arr < 0) or arr[0] <= 0:
        raise ObjectSetError(path, where, f"must be 1-3 finite numbers >= 0 (sliding > 0), got {value!r}")
    out = list(DEFAULT_FRICTION)
    out[: arr.size] = arr.tolist()
    return tuple(float(v) for v in out)


def load_object_dir(root: str | Path, name: str | None = None) -> ObjectSet:
    """Load and validate ``<root>/objects.yaml`` (fields and file existence; meshes load lazily).

    Raises:
        ObjectSetError: Missing/malformed YAML, bad field, duplicate name, missing mesh file.
    """
    root = Path(root).expanduser().resolve()
    path = root / "objects.yaml"
    if not path.is_file():
        raise ObjectSetError(path, "<file>", "no objects.yaml in this directory")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ObjectSetError(path, "<yaml>", f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "objects" not in data:
        raise ObjectSetError(path, "objects", "missing: the file must be a mapping with an 'objects' list")
    auto_center = data.get("auto_center", False)
    if not isinstance(auto_center, bool):
        raise ObjectSetError(path, "auto_center", f"must be true or false, got {auto_center!r}")
    items = data["objects"]
    if not isinstance(items, list) or not items:
        raise ObjectSetError(path, "objects", "must be a non-empty list")
    specs, seen = [], {}
    for i, item in enumerate(items):
        where = f"objects[{i}]"
        if not isinstance(item, dict):
            raise ObjectSetError(path, where, f"must be a mapping, got {item!r}")
        unknown = set(item) - {"name", "mesh", "category", "mass_kg", "split", "friction", "convex_parts"}
        if unknown:
            raise ObjectSetError(path, f"{where}.{sorted(unknown)[0]}", "unknown field")
        nm = item.get("name")
        if not isinstance(nm, str) or not _NAME_RE.match(nm):
            raise ObjectSetError(path, f"{where}.name", f"must be a non-empty string of [A-Za-z0-9_.-], got {nm!r}")
        if nm in seen:
            raise ObjectSetError(path, f"{where}.name", f"duplicate name '{nm}' (also objects[{seen[nm]}])")
        seen[nm] = i
        mesh = item.get("mesh")
        if not isinstance(mesh, str) or not mesh:
            raise ObjectSetError(path, f"{where}.mesh", f"missing or not a path string: {mesh!r}")
        mesh_path = (root / mesh).resolve()
        if mesh_path.suffix.lower() not in (".obj", ".stl"):
            raise ObjectSetError(path, f"{where}.mesh", f"must be an .obj or .stl file, got '{mesh}'")
        if not mesh_path.is_file():
            raise ObjectSetError(path, f"{where}.mesh", f"file not found: {mesh_path}")
        cat = item.get("category")
        if not isinstance(cat, str) or not cat:
            raise ObjectSetError(path, f"{where}.category", f"must be a non-empty string, got {cat!r}")
        mass = item.get("mass_kg")
        if isinstance(mass, bool) or not isinstance(mass, (int, float)) or not np.isfinite(mass) or not 0 < mass <= MAX_MASS_KG:
            raise ObjectSetError(path, f"{where}.mass_kg", f"must be a number in (0, {MAX_MASS_KG}] kg, got {mass!r}")
        split = item.get("split", "train")
        if split not in ("train", "test"):
            raise ObjectSetError(path, f"{where}.split", f"must be 'train' or 'test', got {split!r}")
        parts = item.get("convex_parts")
        parts_path = None
        if parts is not None:
            if not isinstance(parts, str):
                raise ObjectSetError(path, f"{where}.convex_parts", f"must be a path string, got {parts!r}")
            parts_path = (root / parts).resolve()
            if not parts_path.is_file():
                raise ObjectSetError(path, f"{where}.convex_parts", f"file not found: {parts_path}")
        specs.append(ObjectSpec(nm, mesh_path, cat, float(mass), split,
                                _friction(item.get("friction"), path, f"{where}.friction"), parts_path, auto_center))
    return ObjectSet(name or str(root), root, tuple(specs))


def load_object_set(name_or_dir: str | Path = BUILTIN_PREFIX) -> ObjectSet:
    """An object set by name (``builtin``, ``builtin/train``, ``builtin/test``) or directory.

    Raises:
        UnknownObjectError: Neither a built-in name nor a directory.
        ObjectSetError: The set's YAML is malformed.
    """
    text = str(name_or_dir)
    if text in (BUILTIN_PREFIX, f"{BUILTIN_PREFIX}/train", f"{BUILTIN_PREFIX}/test"):
        full = load_object_dir(builtin_dir(), BUILTIN_PREFIX)
        return full if text == BUILTIN_PREFIX else full.split(text.split("/")[1])
    path = Path(text).expanduser()
    if path.is_dir():
        return load_object_dir(path)
    if path.name == "objects.yaml" and path.is_file():
        return load_object_dir(path.parent)
    raise UnknownObjectError(f"unknown object set '{text}': not 'builtin', 'builtin/train', 'builtin/test' "
                             "nor a directory with objects.yaml")


# --------------------------------------------------------------------------------------------
# Meshes


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_mesh_file(spec: ObjectSpec):
    import trimesh

    try:
        mesh = trimesh.load(str(spec.mesh), force="mesh", process=True)
    except Exception as exc:  # trimesh raises many types for bad files
        raise ObjectMeshError(spec.mesh, spec.name, f"cannot read the mesh: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) < 4:
        raise ObjectMeshError(spec.mesh, spec.name, "empty mesh (no faces)")
    mesh.remove_unreferenced_vertices()
    return mesh


def load_mesh(spec: ObjectSpec) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 [m] and faces (F, 3) int64 of an object's mesh, validated.

    Raises:
        ObjectMeshError: Unreadable, empty or degenerate (extent < 1 mm, zero volume), not resting
            on z = 0 or not centred in x/y (unless the set has ``auto_center: true``).
    """
    mesh = _read_mesh_file(spec)
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    if not np.all(np.isfinite(v)):
        raise ObjectMeshError(spec.mesh, spec.name, "vertices contain NaN/inf")
    lo, hi = v.min(0), v.max(0)
    ext = hi - lo
    if np.any(ext < MIN_EXTENT):
        raise ObjectMeshError(spec.mesh, spec.name, f"degenerate: extent {ext.round(5).tolist()} m (< {MIN_EXTENT} m along an axis)")
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum() / 2
    if area < MIN_EXTENT**2:
        raise ObjectMeshError(spec.mesh, spec.name, f"degenerate: surface area {area:.3g} m^2")
    centre_xy = (lo[:2] + hi[:2]) / 2
    if spec.auto_center:
        v = v - np.array([centre_xy[0], centre_xy[1], lo[2]])
    else:
        if abs(lo[2]) > PLACEMENT_TOL:
            raise ObjectMeshError(spec.mesh, spec.name, f"does not rest on z = 0: lowest vertex at z = {lo[2]:.4f} m "
                                  f"(tolerance {PLACEMENT_TOL} m; translate the mesh or set auto_center: true)")
        if np.any(np.abs(centre_xy) > PLACEMENT_TOL):
            raise ObjectMeshError(spec.mesh, spec.name, f"not centred in x/y: bounding-box centre at {centre_xy.round(4).tolist()} m "
                                  f"(tolerance {PLACEMENT_TOL} m; translate the mesh or set auto_center: true)")
    return v, f


def mesh_info(spec: ObjectSpec) -> dict:
    """Volume [m^3], extents [m], watertightness, hull volume ratio of an object's mesh."""
    import trimesh

    v, f = load_mesh(spec)
    mesh = trimesh.Trimesh(v, f, process=False)
    hull = mesh.convex_hull
    vol = float(mesh.volume) if mesh.is_watertight else float("nan")
    return {"volume_m3": vol, "extents_m": (v.max(0) - v.min(0)).tolist(), "watertight": bool(mesh.is_watertight),
            "hull_ratio": vol / float(hull.volume) if mesh.is_watertight else float("nan"), "faces": len(f)}


# --------------------------------------------------------------------------------------------
# Convex decomposition


@dataclass(frozen=True)
class DecompositionParams:
    """Parameters of :func:`convex_parts` (part of the cache key).

    Attributes:
        convex_ratio: A component whose volume is >= this fraction of its hull's is used as its hull.
        threshold: CoACD concavity threshold (smaller: more, tighter parts).
        max_convex_hull: CoACD cap on parts per component (-1: none).
        resolution: CoACD sampling resolution.
        preprocess_resolution: CoACD manifold pre-processing resolution.
        max_ch_vertex: CoACD cap on vertices per part.
        seed: CoACD random seed (determinism).
    """

    convex_ratio: float = 0.92
    threshold: float = 0.04
    max_convex_hull: int = 16
    resolution: int = 2000
    preprocess_resolution: int = 50
    max_ch_vertex: int = 64
    seed: int = 0


def cache_dir() -> Path:
    """Decomposition cache: ``$DEXGRASP_CACHE_DIR`` or ``$XDG_CACHE_HOME/dexgrasp/objects``."""
    env = os.environ.get("DEXGRASP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "dexgrasp" / "objects"


def _params_text(params: DecompositionParams) -> str:
    return json.dumps(asdict(params), sort_keys=True, separators=(",", ":"))


def write_parts(path: Path, parts: list[np.ndarray], mesh_sha256: str, params: DecompositionParams) -> None:
    """Write convex parts as one OBJ (one ``o part_i`` per part, hull faces), with a provenance header."""
    from scipy.spatial import ConvexHull

    lines = [PARTS_MAGIC, f"# mesh_sha256: {mesh_sha256}", f"# params: {_params_text(params)}"]
    offset = 1
    for i, pts in enumerate(parts):
        hull = ConvexHull(pts)
        used = np.unique(hull.simplices)
        remap = {int(j): k for k, j in enumerate(used)}
        lines.append(f"o part_{i}")
        lines.extend(f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in pts[used])
        for tri in hull.simplices:
            a, b, c = (remap[int(t)] + offset for t in tri)
            lines.append(f"f {a} {b} {c}")
        offset += len(used)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def read_parts(path: Path) -> tuple[list[np.ndarray], dict]:
    """Parts (list of (V_i, 3) vertex arrays) and header (``mesh_sha256``, ``params``) of a parts OBJ."""
    header, parts, cur = {}, [], None
    with open(path) as f:
        first = f.readline().rstrip("\n")
        if first != PARTS_MAGIC:
            raise ObjectMeshError(path, "?", f"not a dexgrasp convex-parts file (first line {first!r})")
        for line in f:
            if line.startswith("# mesh_sha256:"):
                header["mesh_sha256"] = line.split(":", 1)[1].strip()
            elif line.startswith("# params:"):
                header["params"] = line.split(":", 1)[1].strip()
            elif line.startswith("o "):
                cur = []
                parts.append(cur)
            elif line.startswith("v ") and cur is not None:
                cur.append([float(t) for t in line.split()[1:4]])
    return [np.asarray(p, dtype=np.float64) for p in parts if len(p) >= 4], header


def _components(v: np.ndarray, f: np.ndarray):
    import trimesh

    mesh = trimesh.Trimesh(v, f, process=True)
    comps = mesh.split(only_watertight=False)
    return mesh, comps


def decompose(v: np.ndarray, f: np.ndarray, params: DecompositionParams, name: str = "?") -> list[np.ndarray]:
    """Convex parts of a mesh (no cache): per connected component, its hull if convex enough,
    else CoACD's parts. Non-watertight meshes: one hull and an :class:`ObjectMeshWarning`."""
    mesh, comps = _components(v, f)
    if not mesh.is_watertight:
        warnings.warn(f"object '{name}': mesh is not watertight; its convex hull is used for collision",
                      ObjectMeshWarning, stacklevel=2)
        return [np.asarray(mesh.convex_hull.vertices, dtype=np.float64)]
    parts = []
    for comp in comps:
        hull = comp.convex_hull
        ratio = comp.volume / hull.volume if hull.volume > 0 else 1.0
        if ratio >= params.convex_ratio:
            parts.append(np.asarray(hull.vertices, dtype=np.float64))
            continue
        try:
            import coacd
        except ImportError as exc:
            raise ObjectError(f"object '{name}' is concave and needs a convex decomposition: "
                              "pip install coacd==1.0.14") from exc
        coacd.set_log_level("error")
        cm = coacd.Mesh(np.asarray(comp.vertices, dtype=np.float64), np.asarray(comp.faces, dtype=np.int32))
        result = coacd.run_coacd(cm, threshold=params.threshold, max_convex_hull=params.max_convex_hull,
                                 resolution=params.resolution, preprocess_resolution=params.preprocess_resolution,
                                 max_ch_vertex=params.max_ch_vertex, seed=params.seed)
        for pv, _pf in result:
            pv = np.asarray(pv, dtype=np.float64)
            if len(pv) >= 4:
                parts.append(pv)
    # Deterministic order: by centroid (x, y, z).
    parts.sort(key=lambda p: tuple(np.round(p.mean(0), 6)))
    return parts


def convex_parts(spec: ObjectSpec, params: DecompositionParams | None = None, use_cache: bool = True) -> list[np.ndarray]:
    """Collision decomposition of an object: list of (V_i, 3) vertex arrays [m], each convex.

    Order of preference: the set's shipped ``convex_parts`` file (if its header matches this mesh's
    SHA-256 and the parameters), the disk cache, then computing (and caching) it.
    """
    params = params or DecompositionParams()
    sha = _sha256(spec.mesh)
    ptext = _params_text(params)
    if spec.convex_parts_file is not None:
        parts, header = read_parts(spec.convex_parts_file)
        if header.get("mesh_sha256") == sha and header.get("params") == ptext and not spec.auto_center:
            return parts
        warnings.warn(f"object '{spec.name}': shipped convex parts {spec.convex_parts_file} do not match the mesh "
                      "or parameters; using the cache / recomputing", ObjectMeshWarning, stacklevel=2)
    key = hashlib.sha256(f"{sha}|{ptext}|auto_center={spec.auto_center}".encode()).hexdigest()[:32]
    cached = cache_dir() / f"{key}.obj"
    if use_cache and cached.is_file():
        try:
            return read_parts(cached)[0]
        except (OSError, ValueError, ObjectMeshError):
            pass  # corrupt cache entry: recompute
    v, f = load_mesh(spec)
    parts = decompose(v, f, params, spec.name)
    if use_cache:
        try:
            write_parts(cached, parts, sha, params)
            return read_parts(cached)[0]  # the same (rounded, hull-vertex) parts as every later call
        except OSError as exc:
            warnings.warn(f"cannot write the decomposition cache {cached}: {exc}", ObjectMeshWarning, stacklevel=2)
    return parts


def decompose_set(objects: Iterable[ObjectSpec], params: DecompositionParams | None = None,
                  log: Callable[[str], None] = print) -> dict[str, list[np.ndarray]]:
    """:func:`convex_parts` for every object, with one progress line per object."""
    objects = list(objects)
    out = {}
    t_all = time.perf_counter()
    for i, spec in enumerate(objects, 1):
        t0 = time.perf_counter()
        out[spec.name] = convex_parts(spec, params)
        log(f"[{i}/{len(objects)}] {spec.name}: {len(out[spec.name])} part(s) ({time.perf_counter() - t0:.1f} s, "
            f"total {time.perf_counter() - t_all:.0f} s)")
    return out


def point_in_parts(points: np.ndarray, parts: list[np.ndarray], tol: float = 0.0) -> np.ndarray:
    """(N,) bool: is each point inside (or within ``tol`` [m] of) the hull of some part."""
    from scipy.spatial import ConvexHull

    inside = np.zeros(len(points), dtype=bool)
    for p in parts:
        eq = ConvexHull(p).equations  # (k, 4): n . x + d <= 0 inside, n unit
        inside |= np.all(points @ eq[:, :3].T + eq[:, 3] <= tol, axis=1)
    return inside


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dex_sim.objects", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("check", "decompose"):
        p = sub.add_parser(cmd)
        p.add_argument("set", nargs="?", default=BUILTIN_PREFIX)
    args = parser.parse_args(argv)
    try:
        objset = load_object_set(args.set)
        if args.cmd == "check":
            for spec in objset:
                info = mesh_info(spec)
                print(f"{spec.name:24s} {spec.category:10s} {spec.split:5s} {spec.mass_kg:6.3f} kg  "
                      f"extents {np.round(info['extents_m'], 3).tolist()} m  hull ratio {info['hull_ratio']:.2f}")
            print(f"{len(objset)} objects OK in {objset.root}")
        else:
            decompose_set(objset)
    except ObjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
