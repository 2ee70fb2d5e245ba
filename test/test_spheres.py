"""Tests of dex_description.spheres: depth functions, sampling, fitting, coverage, YAML, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from dex_description import spheres as S
from dex_description.errors import DescriptionError, ModelFileError

REPO = Path(__file__).resolve().parents[1]
SPHERE_DIR = REPO / "config" / "robots" / "spheres"
SHIPPED = ("ur10e", "ur5e", "shadow_right", "leap_right")


SHADOW_XML = "grippers/shadow/assets/right_hand.xml"  # the upstream file: fine for geometry tests


def _model_path(relpath: str) -> Path:
    from dex_description.models import model_file

    return model_file(relpath, verify=False)  # set-up fetches the models; missing ones fail loudly


@pytest.fixture(scope="module")
def shadow() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(_model_path(SHADOW_XML)))


# ------------------------------------------------------------------------------------------------
# depth functions vs analytic values


def test_box_depth_analytic():
    g = S.make_geom("box", (0.03, 0.02, 0.01), pos=(0.1, 0, 0))
    pts = np.array([[0.1, 0, 0], [0.1, 0, 0.005], [0.1 + 0.05, 0, 0], [0.1 + 0.03 + 0.003, 0.02 + 0.004, 0]])
    want = [0.01, 0.005, -0.02, -0.005]
    np.testing.assert_allclose(S.geom_signed_depth(g, pts), want, atol=1e-12)


def test_rotated_box_depth():
    # 90 deg about z: local x (half 0.03) becomes body y
    q = (math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4))
    g = S.make_geom("box", (0.03, 0.01, 0.01), quat=q)
    np.testing.assert_allclose(S.geom_signed_depth(g, np.array([[0, 0.04, 0], [0.02, 0, 0]])), [-0.01, -0.01],
                               atol=1e-12)
    assert S.geom_signed_depth(g, np.array([[0, 0.025, 0]]))[0] == pytest.approx(0.005)


def test_sphere_capsule_cylinder_depth_analytic():
    sph = S.make_geom("sphere", (0.02,))
    np.testing.assert_allclose(S.geom_signed_depth(sph, np.array([[0, 0, 0], [0.03, 0, 0], [0.01, 0, 0]])),
                               [0.02, -0.01, 0.01], atol=1e-12)
    cap = S.make_geom("capsule", (0.01, 0.05))  # axis local z, half-length 0.05
    pts = np.array([[0, 0, 0.03], [0.02, 0, 0.03], [0, 0, 0.07], [0, 0, 0.055]])
    np.testing.assert_allclose(S.geom_signed_depth(cap, pts), [0.01, -0.01, -0.01, 0.005], atol=1e-12)
    cyl = S.make_geom("cylinder", (0.01, 0.05))
    pts = np.array([[0, 0, 0], [0, 0, 0.045], [0.02, 0, 0], [0.013, 0, 0.054], [0, 0, 0.06]])
    np.testing.assert_allclose(S.geom_signed_depth(cyl, pts), [0.01, 0.005, -0.01, -0.005, -0.01], atol=1e-12)


def test_ellipsoid_depth_matches_dense_surface():
    e = S.make_geom("ellipsoid", (0.03, 0.02, 0.01), pos=(0.01, 0.0, 0.0))
    # dense surface of the ellipsoid
    u = S.fibonacci_sphere(200000)
    surf = e.pos + u * e.size
    rng = np.random.default_rng(3)
    pts = e.pos + rng.uniform(-0.05, 0.05, size=(60, 3))
    pts[:20] = e.pos + rng.uniform(-1, 1, size=(20, 3)) * e.size * 0.5  # inside
    sd = S.geom_signed_depth(e, pts)
    brute = np.array([np.linalg.norm(surf - p, axis=1).min() for p in pts])
    np.testing.assert_allclose(np.abs(sd), brute, atol=2e-4)
    assert np.all(sd[:20] > 0)
    # on an axis: exact
    assert S.geom_signed_depth(e, np.array([[0.01 + 0.05, 0, 0]]))[0] == pytest.approx(-0.02, abs=1e-9)
    assert S.geom_signed_depth(e, e.pos[None])[0] == pytest.approx(0.01, abs=1e-7)  # degenerate point


def test_mesh_hull_depth_is_exact_for_a_cube():
    corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float) * 0.02
    extra = np.random.default_rng(0).uniform(-0.02, 0.02, size=(50, 3))  # interior points: same hull
    mesh = S.make_geom("mesh", vertices=np.concatenate([corners, extra]))
    box = S.make_geom("box", (0.02, 0.02, 0.02))
    pts = np.random.default_rng(1).uniform(-0.05, 0.05, size=(500, 3))
    np.testing.assert_allclose(S.geom_signed_depth(mesh, pts), S.geom_signed_depth(box, pts), atol=1e-12)
    assert mesh.volume == pytest.approx(box.volume)
    # the cheap outside value is a lower bound of the distance
    cheap = S.geom_signed_depth(mesh, pts, exact_outside=False)
    assert np.all(-cheap <= -S.geom_signed_depth(box, pts) + 1e-12)


def test_union_depth_is_max_and_outside_is_exact_distance():
    a = S.make_geom("box", (0.01, 0.01, 0.01))
    b = S.make_geom("sphere", (0.01,), pos=(0.05, 0, 0))
    pts = np.array([[0, 0, 0], [0.05, 0, 0], [0.03, 0, 0], [0.05, 0, 0.02]])
    np.testing.assert_allclose(S.signed_depth([a, b], pts), [0.01, 0.01, -0.01, -0.01], atol=1e-12)


def test_mesh_points_land_where_mujoco_collides(shadow):
    """Our hull (body frame) vs MuJoCo's own signed distance (mj_geomDistance) to a probe sphere."""
    spec = mujoco.MjSpec.from_file(str(_model_path(SHADOW_XML)))
    probe_r = 0.001
    body = spec.worldbody.add_body(name="probe_body", mocap=True)
    body.add_geom(name="probe", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[probe_r, 0, 0])
    m = spec.compile()
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    probe = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "probe")
    bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "rh_ffdistal")
    (g,) = S.collision_geoms(m, "rh_ffdistal")
    assert g.type_name == "mesh"
    lo, hi = g.aabb()
    pts = np.random.default_rng(0).uniform(lo - 0.004, hi + 0.004, size=(40, 3))
    ours = S.geom_signed_depth(g, pts)
    theirs = []
    for p in pts:
        d.mocap_pos[0] = d.xpos[bid] + d.xmat[bid].reshape(3, 3) @ p
        mujoco.mj_kinematics(m, d)
        theirs.append(mujoco.mj_geomDistance(m, d, g.geom_id, probe, 1.0, None) + probe_r)
    assert (ours > 0).sum() >= 3 and (ours < 0).sum() >= 3
    np.testing.assert_allclose(-ours, theirs, atol=5e-6)


def test_collision_geoms_filters_and_errors(shadow):
    geoms = S.collision_geoms(shadow, "rh_palm")
    assert len(geoms) == 8 and all(g.type_name == "box" for g in geoms)
    assert all(shadow.geom_contype[g.geom_id] or shadow.geom_conaffinity[g.geom_id] for g in geoms)
    for g in geoms:  # pose in the body frame, straight from the model
        np.testing.assert_allclose(g.pos, shadow.geom_pos[g.geom_id])
        q = shadow.geom_quat[g.geom_id]
        np.testing.assert_allclose(g.quat * np.sign(g.quat[0] * q[0] or 1), q, atol=1e-12)
    with pytest.raises(DescriptionError, match="no body 'nope'"):
        S.collision_geoms(shadow, "nope")
    m = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body name="b"><geom type="plane" size="1 1 1"/></body></worldbody></mujoco>')
    with pytest.raises(DescriptionError, match="unsupported type"):
        S.collision_geoms(m, "b")


# ------------------------------------------------------------------------------------------------
# sampling


def test_volume_samples_uniform_on_union():
    a = S.make_geom("box", (0.02, 0.01, 0.01))
    b = S.make_geom("box", (0.01, 0.02, 0.01), pos=(0.01, 0, 0))  # overlaps a in x in [0, 0.02]
    pts = S.sample_volume([a, b], 40000, np.random.default_rng(0))
    assert np.all(S.signed_depth([a, b], pts) >= 0)
    union = a.volume + b.volume - 0.02 * 0.02 * 0.02
    in_a = (S.geom_signed_depth(a, pts) >= 0).mean()
    assert in_a == pytest.approx(a.volume / union, abs=0.01)


def test_surface_samples_lie_on_the_union_boundary():
    a = S.make_geom("box", (0.02, 0.01, 0.01))
    b = S.make_geom("box", (0.02, 0.01, 0.01), pos=(0.04, 0, 0))  # shares the face x = 0.02
    c = S.make_geom("capsule", (0.005, 0.01), pos=(0, 0.01, 0))
    pts = S.sample_surface([a, b, c], 5000, np.random.default_rng(0))
    sd = S.signed_depth([a, b, c], pts)
    np.testing.assert_allclose(sd, 0, atol=1e-9)
    assert np.all(np.abs(pts[:, 0] - 0.02) > 1e-9)  # nothing on the shared (interior) face


def _all_types():
    q = (math.cos(0.3), math.sin(0.3), 0.0, 0.0)
    verts = np.random.default_rng(2).normal(size=(40, 3)) * 0.01 + [0.05, 0, 0]
    return [S.make_geom("sphere", (0.01,), pos=(0, 0.1, 0)), S.make_geom("box", (0.01, 0.02, 0.005), quat=q),
            S.make_geom("capsule", (0.008, 0.02), quat=q), S.make_geom("cylinder", (0.01, 0.015), quat=q),
            S.make_geom("ellipsoid", (0.02, 0.01, 0.005), quat=q), S.make_geom("mesh", vertices=verts)]


@pytest.mark.parametrize("i", range(6))
def test_samples_of_every_geom_type(i):
    g = _all_types()[i]
    rng = np.random.default_rng(0)
    vol = S.sample_volume([g], 3000, rng)
    assert np.all(S.geom_signed_depth(g, vol) >= 0)
    surf = S.sample_surface([g], 3000, rng)
    np.testing.assert_allclose(S.geom_signed_depth(g, surf), 0, atol=1e-7)
    # uniform in volume: the fraction deeper than half the smallest size matches the analytic one
    if g.type_name == "box":
        frac = np.prod(g.size - 0.0025) / np.prod(g.size)
        assert (S.geom_signed_depth(g, vol) > 0.0025).mean() == pytest.approx(frac, abs=0.03)
    if g.type_name == "cylinder":  # share of the caps in the area
        r, h = g.size[:2]
        loc = (surf - g.pos) @ g.rot
        on_cap = np.abs(np.abs(loc[:, 2]) - h) < 1e-9
        assert on_cap.mean() == pytest.approx(2 * r * r / (2 * r * r + 4 * r * h), abs=0.03)


# ------------------------------------------------------------------------------------------------
# fitting


def test_single_sphere_geom_gets_one_sphere():
    r, margin = 0.02, 0.002
    g = S.make_geom("sphere", (r,), pos=(0.1, -0.2, 0.3))
    fit = S.fit_spheres([g], "ball", max_spheres=5, margin=margin, n_samples=2000, n_candidates=500)
    assert len(fit) == 1
    np.testing.assert_allclose(fit.centres[0], g.pos, atol=1e-12)
    assert fit.radii[0] == pytest.approx(r + margin)
    rep = S.coverage_of_geoms([g], fit.centres, fit.radii, "ball", n_samples=3000)
    assert rep.volume == 1.0 and rep.surface == 1.0 and rep.surface_max_gap == 0.0
    assert rep.max_protrusion == pytest.approx(margin, abs=1e-9)


def test_box_coverage_reaches_target_and_protrusion_is_bounded():
    g = S.make_geom("box", (0.03, 0.02, 0.012))
    margin, target = 0.003, 0.95
    fit = S.fit_spheres([g], "box", max_spheres=40, margin=margin, coverage_target=target,
                        n_samples=3000, n_candidates=1000)
    assert fit.fit_volume_coverage >= target
    rep = S.coverage_of_geoms([g], fit.centres, fit.radii, "box", n_samples=5000)
    assert rep.volume >= target - 0.015  # out-of-sample estimate
    assert rep.max_protrusion <= margin + 1e-9
    assert rep.count == len(fit) < 40


def test_fit_is_deterministic_for_a_seed():
    g = [S.make_geom("box", (0.03, 0.02, 0.012)), S.make_geom("capsule", (0.01, 0.03), pos=(0.03, 0, 0))]
    kw = dict(max_spheres=6, margin=0.003, n_samples=1500, n_candidates=500)
    a = S.fit_spheres(g, "b", seed=4, **kw)
    b = S.fit_spheres(g, "b", seed=4, **kw)
    c = S.fit_spheres(g, "b", seed=5, **kw)
    np.testing.assert_array_equal(a.centres, b.centres)
    np.testing.assert_array_equal(a.radii, b.radii)
    assert not (a.centres.shape == c.centres.shape and np.array_equal(a.centres, c.centres))
    r1 = S.coverage_of_geoms(g, a.centres, a.radii, "b", n_samples=2000, seed=1)
    r2 = S.coverage_of_geoms(g, b.centres, b.radii, "b", n_samples=2000, seed=1)
    assert r1 == r2


def test_fit_does_not_depend_on_other_bodies(shadow):
    one = S.fit_model_spheres(shadow, ["rh_ffmiddle"], max_spheres=2, n_samples=1000)
    two = S.fit_model_spheres(shadow, ["rh_thhub", "rh_ffmiddle"], max_spheres=2, n_samples=1000)
    np.testing.assert_array_equal(one["rh_ffmiddle"].centres, two["rh_ffmiddle"].centres)


def test_fit_small_real_body(shadow):
    fit = S.fit_body_spheres(shadow, "rh_thmiddle", max_spheres=4, margin=0.002, n_samples=2000)
    rep = S.coverage(shadow, "rh_thmiddle", fit, n_samples=4000)
    assert 1 <= rep.count <= 4
    assert rep.volume > 0.95 and rep.surface > 0.9
    assert rep.max_protrusion <= 0.002 + 1e-6


def test_fill_hull_covers_a_bracket_with_fewer_spheres():
    # a U-shaped bracket: two thin plates 30 mm apart joined by a web
    plates = [S.make_geom("box", (0.01, 0.012, 0.002), pos=(0, 0, 0.015)),
              S.make_geom("box", (0.01, 0.012, 0.002), pos=(0, 0, -0.015)),
              S.make_geom("box", (0.01, 0.002, 0.017), pos=(0, -0.012, 0))]
    kw = dict(max_spheres=6, margin=0.004, n_samples=2000, n_candidates=800)
    none = S.fit_spheres(plates, "u", fill="none", **kw)
    hull = S.fit_spheres(plates, "u", fill="hull", **kw)
    rn = S.coverage_of_geoms(plates, none.centres, none.radii, "u", n_samples=3000)
    rh = S.coverage_of_geoms(plates, hull.centres, hull.radii, "u", n_samples=3000)
    assert rh.volume > 0.9 and rh.volume > 1.5 * rn.volume
    assert rh.max_protrusion_hull <= 0.004 + 1e-6  # beyond the hull: at most the margin
    assert rh.max_protrusion > 0.006 > rn.max_protrusion  # into the hollow
    with pytest.raises(DescriptionError, match="fill"):
        S.fit_spheres(plates, "u", fill="blob")


def test_body_params_overrides():
    base = {"margin": 0.003, "max_spheres": 3}
    ov = {"rh_*distal": {"max_spheres": 4}, "rh_ffdistal": {"margin": 0.002}}
    assert S.body_params("rh_ffdistal", base, ov) == {"margin": 0.002, "max_spheres": 4}
    assert S.body_params("rh_palm", base, ov) == base
    with pytest.raises(DescriptionError, match="unknown fit parameter"):
        S.body_params("x", base, {"x": {"radius": 1}})


# ------------------------------------------------------------------------------------------------
# YAML


def test_save_load_roundtrip(tmp_path):
    s = S.SphereSet("link", np.array([[0.1, 0.2, 0.3], [0.0, -0.01, 0.02]]), np.array([0.0123456789, 0.02]))
    rep = S.CoverageReport("link", 2, 0.99, 0.97, 0.001, 0.002, 0.001, 0.002, 0.001, 100, 100)
    out = S.save_spheres(tmp_path / "x.yaml", "thing", {"link": s}, {"link": rep}, {"margin": 0.002},
                         command="test")
    text = out.read_text()
    assert text.startswith("# generated by `test`")
    got = S.load_spheres(out)
    c, r = got["link"]
    assert c.dtype == np.float64 and c.shape == (2, 3) and r.shape == (2,)
    np.testing.assert_allclose(c, s.centres, atol=1e-6)
    assert r[0] >= s.radii[0] and r[0] - s.radii[0] < 1e-6  # rounded up
    f = S.read_sphere_file(out)
    assert f.model == "thing" and f.params == {"margin": 0.002}
    assert f.coverage["link"]["volume"] == 0.99


@pytest.mark.parametrize("text, field", [
    ("model: m\nbodies: {a: {spheres: [[0, 0, 0]]}}\n", "bodies.a.spheres[0]"),
    ("model: m\nbodies: {a: {spheres: [[0, 0, 0, -1]]}}\n", "bodies.a.spheres[0]"),
    ("model: m\nbodies: {a: {spheres: [[0, 0, 0, 0.1], [0, 'x', 0, 0.1]]}}\n", "bodies.a.spheres[1]"),
    ("model: m\nbodies: {a: {spheres: []}}\n", "bodies.a.spheres"),
    ("model: m\nbodies: {a: [1, 2]}\n", "bodies.a"),
    ("model: m\n", "bodies"),
    ("bodies: {a: {spheres: [[0, 0, 0, 0.1]]}}\n", "model"),
    ("model: m\nparams: 3\nbodies: {a: {spheres: [[0, 0, 0, 0.1]]}}\n", "params"),
    ("model: m\nbodies: {a: {spheres: [[0, 0, 0, 0.1]], coverage: 7}}\n", "bodies.a.coverage"),
    ("model: [unclosed\n", "(file)"),
    ("- just\n- a list\n", "(root)"),
])
def test_malformed_yaml_names_file_and_field(tmp_path, text, field):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(S.SphereFileError) as info:
        S.load_spheres(p)
    assert info.value.field == field
    assert str(p) in str(info.value) and field in str(info.value)
    assert isinstance(info.value, DescriptionError)


def test_missing_yaml(tmp_path):
    with pytest.raises(S.SphereFileError, match="cannot read"):
        S.load_spheres(tmp_path / "none.yaml")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_yaml_matches_model_and_recomputed_coverage(name):
    path = SPHERE_DIR / f"{name}.yaml"
    f = S.read_sphere_file(path)
    assert f.model == name
    model, _, part_bodies = S._resolve_model(f.source)  # the normalised model the presets fit
    assert list(f.spheres) == (part_bodies or S.bodies_with_collision(model))
    p = f.params
    total = 0
    for body, (c, r) in f.spheres.items():
        assert c.shape == (len(r), 3) and np.all(r > 0)
        assert f.coverage[body]["count"] == len(r)
        total += len(r)
    # recompute the stored report for two bodies per model (all bodies would take too long here)
    bodies = list(f.spheres)
    for body in (bodies[0], bodies[-1]):
        rep = S.coverage(model, body, f.spheres[body], p["report_samples"], p["seed"], p["surface_tol"])
        stored = f.coverage[body]
        assert rep.volume == pytest.approx(stored["volume"], abs=2e-3)
        assert rep.surface == pytest.approx(stored["surface"], abs=2e-3)
        assert rep.max_protrusion == pytest.approx(stored["max_protrusion"], abs=2e-5)
        assert rep.surface_max_gap == pytest.approx(stored["surface_max_gap"], abs=2e-5)
    lo, hi = {"ur10e": (20, 60), "ur5e": (20, 60), "shadow_right": (30, 100), "leap_right": (30, 90)}[name]
    assert lo <= total <= hi


# ------------------------------------------------------------------------------------------------
# command line and picture

_XML = """<mujoco><worldbody>
  <body name="base"><geom type="box" size="0.02 0.01 0.01"/>
    <body name="link" pos="0 0 0.05"><joint type="hinge"/><geom type="capsule" size="0.01 0.02"/>
      <geom type="sphere" size="0.01" contype="0" conaffinity="0"/></body></body>
</worldbody></mujoco>"""


def test_main_fit_on_a_tiny_model(tmp_path):
    xml = tmp_path / "tiny.xml"
    xml.write_text(_XML)
    out = tmp_path / "tiny.yaml"
    lines: list[str] = []
    rc = S.main_fit(["--model-xml", str(xml), "--name", "tiny", "--out", str(out), "--margin", "0.002",
                     "--max-spheres", "4", "--n-samples", "1500", "--report-samples", "2000",
                     "--override", "base:margin=0.003"], log=lines.append)
    assert rc == 0, lines
    text = "\n".join(lines)
    assert "base" in text and "link" in text and "TOTAL" in text
    f = S.read_sphere_file(out)
    assert set(f.spheres) == {"base", "link"}
    assert f.params["overrides"] == {"base": {"margin": 0.003}}
    assert f.coverage["base"]["max_protrusion"] <= 0.003 + 1e-6
    assert yaml.safe_load(out.read_text())["model"] == "tiny"


def test_main_fit_errors(tmp_path):
    lines: list[str] = []
    assert S.main_fit(["--model-xml", str(tmp_path / "nope.xml"), "--name", "x", "--out",
                       str(tmp_path / "x.yaml")], log=lines.append) == 1
    assert "nope.xml" in lines[-1]
    assert S.main_fit(["--name", "x"], log=lines.append) == 2
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><geom type='nothing'/></worldbody></mujoco>")
    with pytest.raises(ModelFileError, match="bad.xml"):
        S.load_model(bad)


def test_render_png(tmp_path):
    m = mujoco.MjModel.from_xml_string(_XML)
    fit = S.fit_model_spheres(m, max_spheres=3, margin=0.002, n_samples=1000)
    try:
        out = S.render_spheres(m, fit, tmp_path / "s.png", width=160, height=120, views=((90, -20),))
    except DescriptionError as exc:
        pytest.skip(f"no off-screen OpenGL here: {exc}")
    from PIL import Image

    img = np.asarray(Image.open(out))
    assert img.shape == (240, 160, 3) and img.max() > 0
