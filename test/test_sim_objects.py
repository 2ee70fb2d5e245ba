"""Object sets: objects.yaml validation, the built-in set, convex decomposition, reproducible generation."""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from dex_sim.objects import (
    DecompositionParams,
    ObjectMeshError,
    ObjectMeshWarning,
    ObjectSetError,
    UnknownObjectError,
    builtin_dir,
    convex_parts,
    load_mesh,
    load_object_set,
    point_in_parts,
    read_parts,
)

from dex_sim import objects_gen


@pytest.fixture(scope="module")
def builtin():
    return load_object_set("builtin")


def _write_set(tmp: Path, entries: str, mesh_text: str | None = None, name: str = "m.obj") -> Path:
    if mesh_text is None:
        v, f = objects_gen.box(0.04, 0.03, 0.05)
        mesh_text = objects_gen.obj_text(v, f, "box")
    (tmp / name).write_text(mesh_text)
    (tmp / "objects.yaml").write_text(entries)
    return tmp


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("entries, field, words", [
    ("objects: []\n", "objects", "non-empty"),
    ("foo: 1\n", "objects", "missing"),
    ("objects: [{name: a, category: box, mass_kg: 0.1}]\n", "objects[0].mesh", "missing"),
    ("objects: [{name: a, mesh: nope.obj, category: box, mass_kg: 0.1}]\n", "objects[0].mesh", "not found"),
    ("objects: [{name: a, mesh: m.obj, category: box, mass_kg: -1}]\n", "objects[0].mass_kg", "(0, 10"),
    ("objects: [{name: a, mesh: m.obj, category: box, mass_kg: .nan}]\n", "objects[0].mass_kg", "number"),
    ("objects: [{name: a, mesh: m.obj, category: box, mass_kg: 0.1}, {name: a, mesh: m.obj, category: box, mass_kg: 0.2}]\n",
     "objects[1].name", "duplicate"),
    ("objects: [{name: a, mesh: m.obj, category: box, mass_kg: 0.1, split: val}]\n", "objects[0].split", "train"),
    ("objects: [{name: a, mesh: m.obj, category: box, mass_kg: 0.1, friction: [0, 1]}]\n", "objects[0].friction", "sliding"),
    ("objects: [{name: 'a b', mesh: m.obj, category: box, mass_kg: 0.1}]\n", "objects[0].name", "A-Za-z"),
    ("objects: [{name: a, mesh: m.obj, category: box, mass_kg: 0.1, colour: red}]\n", "objects[0].colour", "unknown"),
    ("objects: [{name: a, mesh: m.ply, category: box, mass_kg: 0.1}]\n", "objects[0].mesh", ".obj or .stl"),
    ("objects: [{name: a, mesh: m.obj, mass_kg: 0.1}]\n", "objects[0].category", "non-empty"),
    ("objects: [\n", "<yaml>", "YAML"),
])
def test_yaml_errors_name_file_and_field(tmp_path, entries, field, words):
    _write_set(tmp_path, entries)
    with pytest.raises(ObjectSetError) as err:
        load_object_set(tmp_path)
    assert err.value.field == field
    assert err.value.path == tmp_path / "objects.yaml"
    assert words in str(err.value) and "objects.yaml" in str(err.value)


def test_missing_yaml_and_unknown_set(tmp_path):
    with pytest.raises(UnknownObjectError):
        load_object_set(tmp_path / "nope")
    with pytest.raises(ObjectSetError, match="no objects.yaml"):
        from dex_sim.objects import load_object_dir
        load_object_dir(tmp_path)


def test_mesh_placement_errors_and_auto_center(tmp_path):
    v, f = objects_gen.box(0.04, 0.03, 0.05)
    shifted = objects_gen.obj_text(v + [0.01, 0.0, 0.02], f, "off")
    _write_set(tmp_path, "objects: [{name: a, mesh: m.obj, category: box, mass_kg: 0.1}]\n", shifted)
    spec = load_object_set(tmp_path).get("a")
    with pytest.raises(ObjectMeshError, match="does not rest on z = 0"):
        load_mesh(spec)
    (tmp_path / "m.obj").write_text(objects_gen.obj_text(v + [0.01, 0.0, 0.0], f, "off"))
    with pytest.raises(ObjectMeshError, match="not centred"):
        load_mesh(spec)
    _write_set(tmp_path, "auto_center: true\nobjects: [{name: a, mesh: m.obj, category: box, mass_kg: 0.1}]\n", shifted)
    vv, _ = load_mesh(load_object_set(tmp_path).get("a"))
    assert abs(vv[:, 2].min()) < 1e-9 and np.allclose((vv.max(0) + vv.min(0))[:2] / 2, 0, atol=1e-9)


def test_empty_and_degenerate_meshes(tmp_path):
    _write_set(tmp_path, "objects: [{name: a, mesh: m.obj, category: x, mass_kg: 0.1}]\n", "# nothing\n")
    with pytest.raises(ObjectMeshError, match="empty"):
        load_mesh(load_object_set(tmp_path).get("a"))
    flat = "v -0.01 -0.01 0\nv 0.01 -0.01 0\nv 0.01 0.01 0\nv -0.01 0.01 0\nf 1 2 3\nf 1 3 4\n"
    _write_set(tmp_path, "objects: [{name: a, mesh: m.obj, category: x, mass_kg: 0.1}]\n", flat)
    with pytest.raises(ObjectMeshError, match="degenerate"):
        load_mesh(load_object_set(tmp_path).get("a"))


def test_non_watertight_gets_hull_and_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path / "cache"))
    v, f = objects_gen.box(0.04, 0.03, 0.05)
    _write_set(tmp_path, "objects: [{name: a, mesh: m.obj, category: box, mass_kg: 0.1}]\n",
               objects_gen.obj_text(v, f[:-2], "open box"))
    with pytest.warns(ObjectMeshWarning, match="not watertight"):
        parts = convex_parts(load_object_set(tmp_path).get("a"))
    assert len(parts) == 1 and len(parts[0]) == 8


# ------------------------------------------------------------------ built-in set


def test_builtin_set_shape(builtin):
    assert len(builtin) >= 40
    cats = Counter(o.category for o in builtin)
    assert len(cats) >= 12
    for must in ("box", "can", "bottle", "bowl", "mug", "cup", "ball", "ellipsoid", "cone", "torus", "block", "tube", "banana"):
        assert cats[must] >= 3, must
    train, test = builtin.split("train"), builtin.split("test")
    assert len(train) + len(test) == len(builtin)
    assert 0.2 <= len(test) / len(builtin) <= 0.3
    for cat in cats:  # stratified: every category in both splits
        assert any(o.category == cat for o in test) and any(o.category == cat for o in train)
    assert load_object_set("builtin/test").names() == test.names()
    assert all(0.02 <= o.mass_kg <= 0.5 for o in builtin)
    size = sum(p.stat().st_size for p in builtin_dir().rglob("*") if p.is_file())
    assert size < 5e6, size


def test_builtin_meshes_rest_centred_graspable(builtin):
    ext = []
    for spec in builtin:
        v, f = load_mesh(spec)
        assert abs(v[:, 2].min()) <= 1e-6, spec.name
        assert np.allclose((v.max(0)[:2] + v.min(0)[:2]) / 2, 0.0, atol=1e-5), spec.name
        ext.append(v.max(0) - v.min(0))
    ext = np.array(ext)
    smallest = np.sort(ext, axis=1)[:, 0]  # the dimension a hand closes on (at best)
    assert np.mean((smallest >= 0.015) & (smallest <= 0.12)) > 0.9
    assert np.all(ext.max(1) <= 0.25)


def test_builtin_parts_shipped_convex_and_cover(builtin, monkeypatch, tmp_path):
    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path))  # shipped parts must be used: no cache writes
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(0)
    for spec in builtin:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ObjectMeshWarning)  # a stale shipped file would warn
            parts = convex_parts(spec)
        assert parts, spec.name
        for p in parts:
            hull = ConvexHull(p)
            assert hull.volume > 1e-9
            signed = p @ hull.equations[:, :3].T + hull.equations[:, 3]  # (V, facets), <= 0 inside
            assert np.all(signed.max(1) > -1e-5)  # every vertex lies on the hull: the part is convex
        v, f = load_mesh(spec)
        # Surface samples lie inside (within 2 mm of) some part: the parts cover the mesh.
        tri = v[f]
        area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        idx = rng.choice(len(f), 300, p=area / area.sum())
        a, b = rng.random((2, 300, 1))
        flip = (a + b) > 1
        a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
        pts = tri[idx, 0] + a * (tri[idx, 1] - tri[idx, 0]) + b * (tri[idx, 2] - tri[idx, 0])
        assert point_in_parts(pts, parts, tol=0.002).mean() > 0.99, spec.name
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["bowl_01", "cup_02", "mug_03", "tube_02", "torus_01"])
def test_concave_cavities_stay_free(builtin, name):
    """The decomposition keeps the cavity open: a bowl/cup/mug/tube/ring centre is in no part."""
    spec = builtin.get(name)
    v, _ = load_mesh(spec)
    parts = convex_parts(spec)
    assert len(parts) > 1
    h = v[:, 2].max()
    probe = np.array([[0.0, 0.0, h * 0.75]]) if spec.category != "torus" else np.array([[0.0, 0.0, h / 2]])
    if spec.category == "mug":  # body centre (the handle shifts the bounding box along +x)
        probe[0, 0] = -(v[:, 0].max() - v[:, 0].min()) / 2 + 0.04
    assert not point_in_parts(probe, parts, tol=0.0)[0]


def test_builtin_regenerates_byte_for_byte(tmp_path):
    """Two objects (a convex one and a CoACD-decomposed one) regenerate identically to the repo."""
    pytest.importorskip("coacd", reason="pip install coacd==1.0.14 (convex decomposition)")
    only = ["box_02", "block_02", "banana_01"]
    objects_gen.generate(tmp_path, seed=0, only=only, log=lambda s: None)
    src = builtin_dir()
    for name in only:
        for sub in ("meshes", "convex"):
            a = (tmp_path / sub / f"{name}.obj").read_bytes()
            b = (src / sub / f"{name}.obj").read_bytes()
            assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest(), f"{sub}/{name}.obj differs"
    assert (tmp_path / "objects.yaml").read_bytes() == (src / "objects.yaml").read_bytes()


def test_shipped_parts_headers_match(builtin):
    params = DecompositionParams()
    for spec in builtin:
        _, header = read_parts(spec.convex_parts_file)
        assert header["mesh_sha256"] == hashlib.sha256(spec.mesh.read_bytes()).hexdigest(), spec.name
        assert '"seed":%d' % params.seed in header["params"]


def test_cache_used_and_keyed(tmp_path, monkeypatch):
    """A set without shipped parts: first call computes and caches, second reads the cache."""
    pytest.importorskip("coacd", reason="pip install coacd==1.0.14 (convex decomposition)")
    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path / "cache"))
    v, f = objects_gen.normalise(*objects_gen.make_block(np.random.default_rng(1), "L"))
    _write_set(tmp_path, "objects: [{name: l, mesh: m.obj, category: block, mass_kg: 0.1}]\n", objects_gen.obj_text(v, f, "L"))
    spec = load_object_set(tmp_path).get("l")
    parts = convex_parts(spec)
    files = list((tmp_path / "cache").glob("*.obj"))
    assert len(files) == 1 and len(parts) >= 2
    again = convex_parts(spec)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = convex_parts(spec, DecompositionParams(threshold=0.1))
    assert len(list((tmp_path / "cache").glob("*.obj"))) == 2
    assert len(other) >= 1
