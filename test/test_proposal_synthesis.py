"""Upper level of the grasp synthesis: object surface grid, hand model, energy gradients vs finite
differences, initialisation, determinism, devices."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from dex_description.rotations import make_transform, matrix_to_rot6d, rot6d_to_matrix
from dex_proposal.errors import ConfigError
from dex_proposal.hand import HandModel
from dex_proposal.surface import SurfaceConfig, build_surface, is_partial, mirror_complete
from dex_proposal.synthesis import StageConfig, Synthesizer, default_config, rank

ROBOTS = ["ur10e_shadow", "ur5e_leap"]


def _box_sdf(q: np.ndarray, half: np.ndarray) -> np.ndarray:
    d = np.abs(q) - half
    return np.linalg.norm(np.maximum(d, 0), axis=1) + np.minimum(d.max(1), 0)


def _cloud(mesh: trimesh.Trimesh, n: int = 2500, seed: int = 0):
    pts, fi = trimesh.sample.sample_surface_even(mesh, n, seed=seed)
    return pts, mesh.face_normals[fi]


@pytest.fixture(scope="module")
def cylinder_surface():
    m = trimesh.creation.cylinder(radius=0.03, height=0.12)
    m.apply_translation([0.0, 0.6, 0.06])
    pts, nrm = _cloud(m)
    return build_surface(pts, nrm, table_z=0.0, dtype=torch.float64)


def test_free_space_carving_keeps_the_space_the_camera_saw_empty_outside():
    """A long flat bar on the table, seen from the front and above with noisy points and normals:
    the mirror of its top about one plane crosses the observed surface, and without carving the
    moving-least-squares sign calls ~10 % of the space 4-30 mm above the bar inside. The camera saw
    through that space. (The per-slice planes of the default completion mostly avoid this crossing
    here: 0.2 % without carving.)"""
    from dataclasses import replace as _replace

    ext = np.array([0.2, 0.04, 0.03])
    m = trimesh.creation.box(extents=ext)
    m.apply_translation([0.0, 0.6, ext[2] / 2])
    pts, nrm = _cloud(m, 5000)
    view = np.array([0.3, -np.cos(0.6), np.sin(0.6)])
    view /= np.linalg.norm(view)
    vis = (nrm @ view > 0.1) & (pts[:, 2] > 1e-4)  # the camera's side, not the bottom face
    rng = np.random.default_rng(0)
    p = pts[vis] + rng.normal(0, 0.001, (vis.sum(), 3))
    n = nrm[vis] + rng.normal(0, 0.1, (vis.sum(), 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    half = ext[:2] / 2 - 0.005
    above = np.stack([rng.uniform(-half[0], half[0], 2000), 0.6 + rng.uniform(-half[1], half[1], 2000),
                      ext[2] + rng.uniform(0.004, 0.03, 2000)], 1)
    frac = {}
    for carve, local in ((True, False), (False, False), (True, True)):  # one global mirror plane, then per slice
        surf = build_surface(p, n, _replace(SurfaceConfig(), carve=carve, local_mirror=local, cuboid=False), table_z=0.0,
                             dtype=torch.float64)
        assert surf.partial and surf.completed and surf.info["completion"] == "mirror"
        sdf, _ = surf.query(torch.tensor(above))
        frac[carve, local] = float((sdf < 0).double().mean())
    assert frac[False, False] > 0.05, frac  # the failure that carving fixes is there without it
    assert frac[True, False] < 0.005, frac
    assert frac[True, True] < 0.005, frac  # and with the default per-slice planes
    # by default a box is completed as a box (noisy normals and all): nothing above it is inside either
    surf = build_surface(p, n, SurfaceConfig(), table_z=0.0, dtype=torch.float64)
    assert surf.info["completion"] == "cuboid", surf.info
    assert float((surf.sdf(torch.tensor(above)) < 0).double().mean()) < 0.005
    # mirrored points never go below the table the object stands on
    full, _, _ = mirror_complete(p, n, table_z=0.0)
    assert full[:, 2].min() > 0.0 - 0.003  # observed points carry 1 mm noise; mirrored ones are cut at 0


def test_a_tall_object_seen_from_above_is_completed_down_to_the_table():
    """A 20 cm bottle-like cylinder seen from 22 deg off vertical (the sim camera's angle): one mirror
    plane perpendicular to the view closes it a few cm under its top; extruding the silhouette to
    the table puts the hidden lower walls back, with outward horizontal normals, and nothing in the
    space the camera saw empty. (The default per-slice planes already reach most of the walls here.)"""
    from dataclasses import replace as _replace

    from dex_proposal.surface import extrude_to_table

    m = trimesh.creation.cylinder(radius=0.03, height=0.2)
    m.apply_translation([0.0, 0.6, 0.1])
    pts, nrm = _cloud(m, 6000)
    view = np.array([0.0, -np.sin(np.radians(22)), np.cos(np.radians(22))])
    vis = nrm @ view > 0.05
    p, n = pts[vis], nrm[vis]
    wall = pts[~vis & (pts[:, 2] > 0.01) & (pts[:, 2] < 0.12)]  # the hidden lower walls
    err = {}
    for extrude, local in ((True, False), (False, False), (True, True)):  # one global mirror plane, then per slice
        surf = build_surface(p, n, _replace(SurfaceConfig(), extrude=extrude, local_mirror=local), table_z=0.0,
                             dtype=torch.float64)
        assert surf.partial and surf.completed and ("extruded_points" in surf.info) == extrude
        err[extrude, local] = np.abs(surf.sdf(torch.as_tensor(wall)).numpy())
    assert np.median(err[False, False]) > 0.01, np.median(err[False, False])  # the failure: lower walls missing
    for key in ((True, False), (True, True)):
        assert np.median(err[key]) < 0.003 and np.percentile(err[key], 90) < 0.006, (key, err[key])
    full, full_n, _ = mirror_complete(p, n, table_z=0.0, local=False)
    out, out_n, added = extrude_to_table(full, full_n, 0.0, p, view)
    assert added > 100 and np.array_equal(out[: len(full)], full)
    new, new_n = out[len(full):], out_n[len(full):]
    assert new[:, 2].min() > 0.0 and np.allclose(new_n[:, 2], 0.0) and np.allclose(np.linalg.norm(new_n, axis=1), 1.0)
    radial = new[:, :2] - [0.0, 0.6]
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert np.mean((radial * new_n[:, :2]).sum(1) > 0.5) > 0.9  # normals point out of the object
    # nothing is added in front of what the camera saw: a point 2 cm in front of the seen wall
    assert not np.any((np.abs(new[:, 0]) < 0.01) & (new[:, 1] < 0.6 - 0.05))


def _view_of(mesh: trimesh.Trimesh, view: np.ndarray, n: int = 6000, noise: float = 0.0005, seed: int = 0):
    """Samples of ``mesh`` on the faces that ``view`` (unit, toward the camera) sees, not on the table
    (z > 0), with ``noise`` [m] on the points; the rest of the samples (the hidden side)."""
    pts, nrm = _cloud(mesh, n, seed)
    vis = (nrm @ view > 0.1) & (pts[:, 2] > 1e-4)
    rng = np.random.default_rng(seed)
    return pts[vis] + rng.normal(0, noise, (vis.sum(), 3)), nrm[vis], pts[~vis & (pts[:, 2] > 1e-4)]


def test_one_view_of_a_box_on_the_table_is_completed_as_that_box():
    """A 6 x 4 x 9 cm box at 30 deg yaw, seen from above and one side: the visible top spans both
    horizontal axes and the table closes the bottom, so the box is known; its hidden faces come back
    within 1.5 mm (mirroring leaves them several mm off). Not boxes: a box tipped over an edge, a
    standing cylinder, a box with a step in its top (its visible points do not lie on one box), or
    any box without a table."""
    from dataclasses import replace as _replace

    from dex_proposal.surface import cuboid_complete, mean_spacing

    ext = np.array([0.06, 0.04, 0.09])
    yaw = np.radians(30)
    m = trimesh.creation.box(extents=ext)
    m.apply_transform(trimesh.transformations.rotation_matrix(yaw, [0, 0, 1]))
    m.apply_translation([0.05, 0.6, ext[2] / 2])
    view = np.array([0.2, -np.cos(0.8), np.sin(0.8)])
    view /= np.linalg.norm(view)
    p, n, hidden = _view_of(m, view)
    err = {}
    for cuboid in (True, False):
        surf = build_surface(p, n, _replace(SurfaceConfig(), cuboid=cuboid), table_z=0.0, dtype=torch.float64)
        assert surf.info["completion"] == ("cuboid" if cuboid else "mirror")
        err[cuboid] = np.abs(surf.sdf(torch.as_tensor(hidden)).numpy())
    assert np.percentile(err[True], 90) < 0.0015, np.percentile(err[True], 90)
    assert np.percentile(err[False], 90) > 2 * np.percentile(err[True], 90), (np.percentile(err[False], 90), np.percentile(err[True], 90))
    _, _, info = cuboid_complete(p, n, 0.0, mean_spacing(p))
    assert np.allclose(sorted(info["box_size"][:2]), sorted(ext[:2]), atol=0.002) and abs(info["box_size"][2] - ext[2]) < 0.002
    assert abs(np.sin(2 * (info["box_yaw"] - yaw))) < 0.05  # the yaw, modulo 90 deg
    assert np.allclose(info["box_center"], [0.05, 0.6, ext[2] / 2], atol=0.002)
    # a box tipped 30 deg about a horizontal axis does not stand on a face: its normals are neither up nor level
    tipped = trimesh.creation.box(extents=ext)
    tipped.apply_transform(trimesh.transformations.rotation_matrix(np.radians(30), [1, 0, 0]))
    tipped.apply_translation([0.05, 0.6, -tipped.bounds[0, 2]])
    tp, tn, _ = _view_of(tipped, view)
    assert cuboid_complete(tp, tn, 0.0, mean_spacing(tp)) is None
    surf = build_surface(p, n, SurfaceConfig(), table_z=None, dtype=torch.float64)
    assert surf.info["completion"] == "mirror"
    # a standing cylinder has a flat top and vertical sides too, but its sides face every way
    cyl = trimesh.creation.cylinder(radius=0.03, height=0.1)
    cyl.apply_translation([0.0, 0.6, 0.05])
    cp, cn, _ = _view_of(cyl, view)
    assert cuboid_complete(cp, cn, 0.0, mean_spacing(cp)) is None
    assert build_surface(cp, cn, SurfaceConfig(), table_z=0.0).info["completion"] == "mirror"
    # a box with a 3 cm step in its top (two boxes side by side): no single box holds its points
    low = trimesh.creation.box(extents=[0.04, 0.06, 0.05])
    low.apply_translation([0.02, 0.6, 0.025])
    high = trimesh.creation.box(extents=[0.04, 0.06, 0.08])
    high.apply_translation([-0.02, 0.6, 0.04])
    step = trimesh.util.concatenate([low, high])
    sp, sn, _ = _view_of(step, view)
    assert cuboid_complete(sp, sn, 0.0, mean_spacing(sp)) is None


@pytest.fixture(scope="module", params=ROBOTS)
def hand(request):
    return HandModel(request.param, dtype=torch.float64)


def test_surface_signed_distance_of_a_box():
    half = np.array([0.03, 0.02, 0.06])
    m = trimesh.creation.box(2 * half)
    pts, nrm = _cloud(m, 4000)
    surf = build_surface(pts, nrm, table_z=None, dtype=torch.float64)
    assert not surf.partial
    q = np.random.default_rng(0).uniform(-0.09, 0.09, (4000, 3))
    truth = _box_sdf(q, half)
    sdf, normal = surf.query(torch.as_tensor(q))
    err = np.abs(sdf.numpy() - truth)
    near = np.abs(truth) < 0.02
    assert err[near].mean() < 1.5e-3 and err[near].max() < 6e-3
    assert np.all(np.sign(sdf.numpy()[np.abs(truth) > 0.01]) == np.sign(truth[np.abs(truth) > 0.01]))
    # normals on the +x face point +x
    face = (np.abs(q[:, 0] - half[0]) < 0.003) & (np.abs(q[:, 1]) < 0.01) & (np.abs(q[:, 2]) < 0.04)
    assert face.any() and np.all(normal.numpy()[face, 0] > 0.9)


def test_grid_values_chunked_match_the_moving_least_squares_definition():
    """The grid is evaluated a chunk at a time: any chunk size gives the same values, and they are
    the module doc's weighted point-to-plane distance and normal (computed here by brute force)."""
    from dex_proposal.surface import _grid_values

    rng = np.random.default_rng(3)
    pts, nrm = _cloud(trimesh.creation.icosphere(3, 0.04), 500)
    q = rng.uniform(-0.07, 0.07, (1000, 3))
    h, k = 0.004, 6
    whole = _grid_values(pts, nrm, q, k, h, chunk=10**6)
    assert np.array_equal(_grid_values(pts, nrm, q, k, h, chunk=77), whole)
    for i in rng.choice(len(q), 25, replace=False):
        dist = np.linalg.norm(pts - q[i], axis=1)
        nb = np.argsort(dist)[:k]
        w = np.exp(-(dist[nb] ** 2 - dist[nb[0]] ** 2) / (2 * h * h))
        d = (w * ((q[i] - pts[nb]) * nrm[nb]).sum(1)).sum() / w.sum()
        sdf = np.sign(d) * max(abs(d), dist[nb[0]] - h)
        n = (w[:, None] * nrm[nb]).sum(0)
        assert whole[i, 0] == pytest.approx(sdf, abs=1e-12)
        assert np.allclose(whole[i, 1:], n / np.linalg.norm(n), atol=1e-12)


def test_partial_cloud_is_detected_and_mirror_completed():
    m = trimesh.creation.cylinder(radius=0.03, height=0.1)
    pts, nrm = _cloud(m, 4000)
    view = np.array([1.0, 0.0, 0.0])
    vis = nrm @ view > 0.1
    assert is_partial(nrm[vis], 0.3) and not is_partial(nrm, 0.3)
    full, full_n, info = mirror_complete(pts[vis], nrm[vis])
    assert len(full) > 1.5 * vis.sum()
    # the completed cloud covers the far side of the cylinder (x < 0) that the view never saw
    assert pts[vis][:, 0].min() > -0.005
    assert -0.04 < full[:, 0].min() < -0.02
    surf = build_surface(pts[vis], nrm[vis], SurfaceConfig(), table_z=None, dtype=torch.float64)
    assert surf.partial and surf.completed
    # the cylinder's axis is inside the completed object
    sdf, _ = surf.query(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.03]], dtype=torch.float64))
    assert float(sdf.max()) < -0.01


def test_an_inclined_lying_cylinder_is_completed_about_its_own_axis():
    """A 20 cm cylinder (r = 2.5 cm) seen from 45 deg along its length: its axis recedes from the camera,
    so one mirror plane perpendicular to the view cannot hold it; the per-slice planes
    (``local``) can. Completed points must lie on the true surface (distance from the axis = r)."""
    m = trimesh.creation.cylinder(radius=0.025, height=0.2)
    m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))  # axis along x
    pts, nrm = _cloud(m, 6000)
    view = np.array([np.sin(np.radians(45)), 0.0, np.cos(np.radians(45))])
    vis = nrm @ view > 0.1
    errors = {}
    for local in (False, True):
        full, _, _ = mirror_complete(pts[vis], nrm[vis], local=local)
        added = full[vis.sum():]
        on_body = np.abs(added[:, 0]) < 0.08  # away from the caps
        errors[local] = float(np.abs(np.linalg.norm(added[on_body, 1:], axis=1) - 0.025).mean())
    assert errors[True] < 0.003, errors
    assert errors[True] < 0.5 * errors[False], errors


def test_hand_model_limits_and_coupling(hand):
    assert hand.n_act == len(hand.cfg.actuated)
    assert torch.all(hand.u_lower <= hand.u_upper)
    g = torch.Generator().manual_seed(0)
    u = hand.u_lower + (hand.u_upper - hand.u_lower) * torch.rand(200, hand.n_act, generator=g, dtype=torch.float64)
    q = hand.joints(u)
    lo, hi = hand.kin.lower, hand.kin.upper
    assert torch.all(q >= lo - 1e-9) and torch.all(q <= hi + 1e-9)  # every split stays in range
    # actuated -> joints -> actuated is the identity (coupled sums)
    torch.testing.assert_close(hand.kin.actuated_from_joints(q), u)
    assert len(hand.self_pairs) > 100
    assert hand.surface_local.shape[0] > 300
    # pads face roughly the palm normal at the open pose
    assert hand.aperture > 0.05


def test_self_penetration_term_sums_exactly_the_checked_pairs(hand, cylinder_surface):
    """The self term is evaluated on the pairs found to penetrate (all pairs without autograd); it must equal the sum over
    ``hand.self_pairs`` of ``phi(r_a + r_b - slack_ab - |c_a - c_b|)``, here at poses with fingers folded into
    each other (random in-limit values, many of which self-collide)."""
    from dex_proposal.synthesis import _phi

    syn = Synthesizer(hand, replace(default_config(), dtype="float64"))
    g = torch.Generator().manual_seed(5)
    T0, _ = syn.initial_poses(cylinder_surface, 16, g)
    u = hand.u_lower + (hand.u_upper - hand.u_lower) * torch.rand(16, hand.n_act, generator=g, dtype=torch.float64)
    terms, _, ex = syn.energies(cylinder_surface, T0[:, :3, 3], matrix_to_rot6d(T0[:, :3, :3]), u, "coarse", 0.01, None)
    c = ex["geo"].fk.sphere_centers
    r = hand.sphere_radii
    a, b = hand.self_pairs[:, 0], hand.self_pairs[:, 1]
    want = _phi(r[a] + r[b] - hand.self_pair_slack - (c[:, a] - c[:, b]).norm(dim=-1)).sum(-1)
    assert float(want.max()) > 0  # some of these poses do self-collide
    torch.testing.assert_close(terms["self"], want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_active_set_self_term_equals_the_dense_one_with_its_gradient(hand, dtype):
    """``self_penetration_energy`` differentiates only through the pairs that penetrate (found without
    autograd); value and gradient must be those of the dense form over every pair, in float32 too
    (the detection's Gram matrix rounds, the tolerance must not let a touching pair slip)."""
    from dex_proposal.synthesis import self_penetration_energy

    before = hand.dtype
    h = hand.to(dtype=dtype)  # in place: restored below for the module's other tests
    g = torch.Generator().manual_seed(7)
    u = h.u_lower + (h.u_upper - h.u_lower) * torch.rand(24, h.n_act, generator=g, dtype=torch.float64)
    u[0] = h.named_u["open"]  # free of self-penetration
    T = torch.eye(4, dtype=dtype).expand(24, 4, 4)
    grads, values = [], []
    try:
        for active in (False, True):
            uu = u.to(dtype).clone().requires_grad_(True)
            c = h.forward(uu, T).fk.sphere_centers
            e = self_penetration_energy(c, h.self_pair_reach_checked, active)
            e.sum().backward()
            values.append(e.detach())
            grads.append(uu.grad)
    finally:
        hand.to(dtype=before)
    assert int((values[0] > 0).sum()) >= 5 and int((values[0] == 0).sum()) >= 1  # both kinds of pose
    # float32: the dense form's Gram distances round to ~1e-7 of the gradient's scale (tens)
    scale = float(grads[0].abs().max())
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(values[1], values[0], **tol)
    torch.testing.assert_close(grads[1], grads[0], **tol)
    assert float(grads[1].abs().max()) > 0


def test_the_penetration_skin_keeps_the_hand_outside_the_surface(cylinder_surface):
    """``pen_skin``: the same candidates optimised with a 4 mm skin end with their deepest surface
    sample less deep (or farther out) than without, pads a little farther from the surface."""
    hand = HandModel("ur5e_leap")
    cfg = replace(_short(6, (40, 10, 20)), squeeze_force={"*": 0.0})
    runs = {}
    for skin in (0.0, 0.004):
        c = Synthesizer(hand, replace(cfg, pen_skin=skin)).run(cylinder_surface, seed=3)
        with torch.no_grad():
            geo = hand.to(dtype=torch.float64).forward(c.grasp_u, c.grasp_T)
            runs[skin] = (float(cylinder_surface.sdf(geo.surface).amin(-1).median()),
                          float(c.contact_distance.median()))
    (deep0, pad0), (deep4, pad4) = runs[0.0], runs[0.004]
    assert deep4 > deep0 + 0.001, runs  # the deepest sample comes at least 1 mm farther out
    assert pad4 > pad0, runs


def test_fingers_at_rest_are_free_of_self_penetration_but_pushed_together_are_not(hand, cylinder_surface):
    """Pairs of neighbouring fingers that touch at rest are checked against their rest overlap: the
    open and pre-shape poses cost nothing; spreading abduction joints past their limits' middle
    toward each other (a finger into its neighbour) costs something for at least one pose."""
    syn = Synthesizer(hand, replace(default_config(), dtype="float64"))
    T0, _ = syn.initial_poses(cylinder_surface, 1, torch.Generator().manual_seed(0))
    T = T0.expand(2, 4, 4)
    u = torch.stack([hand.named_u["open"], hand.named_u["pre_shape"]]).double()
    terms, _, _ = syn.energies(cylinder_surface, T[:, :3, 3], matrix_to_rot6d(T[:, :3, :3]), u, "coarse", 0.01, None)
    assert float(terms["self"].abs().max()) == 0.0
    assert int((hand.self_pair_slack > 0).sum()) > 5  # some neighbours do touch at rest and are checked
    g = torch.Generator().manual_seed(1)
    u = hand.u_lower + (hand.u_upper - hand.u_lower) * torch.rand(64, hand.n_act, generator=g, dtype=torch.float64)
    T = T0.expand(64, 4, 4)
    terms, _, _ = syn.energies(cylinder_surface, T[:, :3, 3], matrix_to_rot6d(T[:, :3, :3]), u, "coarse", 0.01, None)
    assert float(terms["self"].max()) > 0


def test_energy_gradient_matches_finite_differences(hand, cylinder_surface):
    """d(total energy)/d(wrist translation, rot6d, actuated) vs central differences, both stages.
    The QP is warm-started from an accurate solve at the base point and every perturbed solve runs
    to 1e-11 tolerances, so that every value is the exact optimum (the envelope gradient is only
    correct there): with a fixed 1000 iterations per perturbed solve, rounding-level changes of the
    surface grid (1e-16 m) moved one LEAP difference quotient by 0.25 %; converged, it agrees to 1e-7."""
    from dex_proposal.qp import QPConfig

    cfg = replace(default_config(), dtype="float64", qp=replace(default_config().qp, iters=300, adapt_every=25,
                                                                 check_every=25, eps_abs=1e-11, eps_rel=1e-11))
    syn = Synthesizer(hand, cfg)
    T0, u0 = syn.initial_poses(cylinder_surface, 2, torch.Generator().manual_seed(3))
    t = T0[:, :3, 3].clone().requires_grad_(True)
    r6 = matrix_to_rot6d(T0[:, :3, :3]).clone().requires_grad_(True)
    u = u0.clone().requires_grad_(True)
    assert isinstance(syn.cfg.qp, QPConfig)
    for kind, margin in (("coarse", 0.01), ("fine", 0.0)):
        with torch.no_grad():
            _, state, _ = syn.energies(cylinder_surface, t, r6, u, kind, margin, None, 40000)
        terms, _, _ = syn.energies(cylinder_surface, t, r6, u, kind, margin, state, 1000)
        total = syn.total(terms)
        assert float(terms["qp"].min()) > 0  # the QP term takes part
        gt, gr, gu = torch.autograd.grad(total.sum(), [t, r6, u])

        def f(tt, rr, uu):
            with torch.no_grad():
                return syn.total(syn.energies(cylinder_surface, tt, rr, uu, kind, margin, state, 20000)[0])

        h = 1e-6
        rng = np.random.default_rng(1)
        for var, grad in ((0, gt), (1, gr), (2, gu)):
            for _ in range(2):
                b = int(rng.integers(2))
                k = int(rng.integers(grad.shape[1]))
                args_p = [t.detach().clone(), r6.detach().clone(), u.detach().clone()]
                args_m = [a.clone() for a in args_p]
                args_p[var][b, k] += h
                args_m[var][b, k] -= h
                fd = float((f(*args_p)[b] - f(*args_m)[b]) / (2 * h))
                an = float(grad[b, k])
                assert abs(fd - an) <= 2e-3 * max(1.0, abs(fd)), (kind, var, b, k, fd, an)


def test_initial_poses_face_the_object_and_stay_above_the_table(hand, cylinder_surface):
    syn = Synthesizer(hand, replace(default_config(), dtype="float64"))
    T, u = syn.initial_poses(cylinder_surface, 64, torch.Generator().manual_seed(0))
    assert torch.all(T[:, 2, 3] > 0.0)  # wrist (root) above the table
    geo = hand.forward(u, T)
    c = cylinder_surface.center
    to_c = c - geo.pads
    to_c = to_c / to_c.norm(dim=-1, keepdim=True)
    facing = (geo.pad_normals * to_c).sum(-1).mean(-1)
    assert float(facing.median()) > 0.3
    gc = (T[:, :3, :3] @ hand.grasp_center + T[:, :3, 3])
    assert float((gc - c).norm(dim=-1).median()) < 0.06
    assert torch.all(u >= hand.u_lower - 1e-12) and torch.all(u <= hand.u_upper + 1e-12)


def _short(n=6, iters=(25, 8, 8)):
    stages = (StageConfig("coarse", "coarse", 0.01, iters[0]), StageConfig("fine", "fine", 0.01, iters[1], 0.3),
              StageConfig("grasp", "fine", 0.0, iters[2], 0.3, 0.0))
    return replace(default_config(), n_candidates=n, stages=stages)


def test_synthesis_is_deterministic_and_consistent(cylinder_surface):
    hand = HandModel("ur5e_leap")
    syn = Synthesizer(hand, replace(_short(), squeeze_force={"*": 0.0}))  # the joint-space squeeze
    a = syn.run(cylinder_surface, seed=4)
    b = syn.run(cylinder_surface, seed=4)
    torch.testing.assert_close(a.grasp_T, b.grasp_T)
    torch.testing.assert_close(a.energy, b.energy)
    c = syn.run(cylinder_surface, seed=5)
    assert not torch.allclose(a.grasp_T, c.grasp_T)
    # squeeze = clamp(grasp + s (grasp - pregrasp)), wrist frozen in the grasp stage, all in limits
    lo, hi = hand.u_lower.double(), hand.u_upper.double()
    s = syn.squeeze_scale
    assert s == hand.cfg.synthesis.squeeze_scale == 0.6  # LEAP's robot YAML
    expected = torch.minimum(torch.maximum(a.grasp_u + s * (a.grasp_u - a.pregrasp_u), lo), hi)
    torch.testing.assert_close(a.squeeze_u, expected)
    assert float((a.squeeze_u - a.grasp_u).abs().max()) > 0  # it does squeeze
    # the wrist is frozen in the grasp stage: pre-grasp = grasp, except raised (+z only) where the
    # open pre-grasp would come too close to the table
    torch.testing.assert_close(a.grasp_T[:, :2], a.pregrasp_T[:, :2])
    torch.testing.assert_close(a.grasp_T[:, 2, :3], a.pregrasp_T[:, 2, :3])
    up = a.pregrasp_T[:, 2, 3] - a.grasp_T[:, 2, 3]
    assert float(up.min()) >= 0 and float(up.max()) <= syn.cfg.pregrasp_max_lift + 1e-6
    for u in (a.pregrasp_u, a.grasp_u, a.squeeze_u):
        assert torch.all(u >= lo - 1e-6) and torch.all(u <= hi + 1e-6)
    order = rank(a, 3)
    assert all(bool(a.valid[i]) for i in order)
    assert list(a.energy[order].numpy()) == sorted(a.energy[order].numpy())
    # the force-aware squeeze changes only the squeeze: the same grasps, other targets, in limits
    f = Synthesizer(hand, replace(_short(), squeeze_force={"*": 3.0})).run(cylinder_surface, seed=4)
    torch.testing.assert_close(f.grasp_T, a.grasp_T)
    torch.testing.assert_close(f.pregrasp_u, a.pregrasp_u)
    assert not torch.allclose(f.squeeze_u, a.squeeze_u)
    assert torch.all(f.squeeze_u >= lo - 1e-6) and torch.all(f.squeeze_u <= hi + 1e-6)


def test_a_stage_keeps_its_lowest_energy_fraction(cylinder_surface):
    """``keep`` after the coarse stage: half the candidates go on, and they are the same as without
    pruning (candidates are optimised independently), those with the lowest coarse energy."""
    hand = HandModel("ur5e_leap")
    full_cfg = replace(_short(6), dtype="float64")  # float32 rounding differs with the batch size
    pruned_cfg = replace(full_cfg, stages=(replace(full_cfg.stages[0], keep=0.5),) + full_cfg.stages[1:])
    full = Synthesizer(hand, full_cfg).run(cylinder_surface, seed=2)
    pruned = Synthesizer(hand, pruned_cfg).run(cylinder_surface, seed=2)
    assert (full.n_initial, len(full.energy)) == (6, 6)
    assert (pruned.n_initial, len(pruned.energy)) == (6, 3) and len(pruned.reasons) == 3
    match = [int(torch.cdist(pruned.grasp_T[i].reshape(1, -1), full.grasp_T.reshape(6, -1)).argmin()) for i in range(3)]
    assert len(set(match)) == 3
    torch.testing.assert_close(pruned.grasp_T, full.grasp_T[match], atol=1e-6, rtol=0)
    torch.testing.assert_close(pruned.pregrasp_u, full.pregrasp_u[match], atol=1e-6, rtol=0)
    # the kept ones had the lowest total energy at the end of the coarse stage
    coarse = Synthesizer(hand, replace(full_cfg, stages=full_cfg.stages[:1], pregrasp_max_lift=0.0))
    c = coarse.run(cylinder_surface, seed=2)
    with torch.no_grad():
        T = c.pregrasp_T
        terms, _, _ = coarse.energies(cylinder_surface, T[:, :3, 3], matrix_to_rot6d(T[:, :3, :3]), c.pregrasp_u,
                                      "coarse", 0.01, None, 200)
        e = coarse.total(terms)
    assert set(match) == set(torch.argsort(e)[:3].tolist())
    with pytest.raises(Exception, match="keep"):
        Synthesizer(hand, replace(full_cfg, stages=(replace(full_cfg.stages[0], keep=0.0),)))


def test_optimisation_reduces_the_energy(cylinder_surface):
    hand = HandModel("ur10e_shadow")
    before = Synthesizer(hand, _short(8, (0, 0, 1))).run(cylinder_surface, seed=0)
    after = Synthesizer(hand, _short(8, (60, 10, 10))).run(cylinder_surface, seed=0)
    assert float(after.energy.median()) < 0.5 * float(before.energy.median())
    assert float(after.contact_distance.abs().median()) < float(before.contact_distance.abs().median())


def test_each_hand_runs_its_own_stages_and_squeeze_unless_told_otherwise():
    """Defaults + the robot YAML's ``hand.synthesis``; explicit stages as given; then the caller's
    scale and per-stage counts; the config's squeeze dict over the YAML's value."""
    from dex_proposal.synthesis import default_stages

    leap, shadow = HandModel("ur5e_leap"), HandModel("ur10e_shadow")
    base = [s.iters for s in default_stages()]
    assert [s.iters for s in Synthesizer(leap, default_config()).stages] == [120, 40, 40]  # its YAML
    assert [s.iters for s in Synthesizer(shadow, default_config()).stages] == [140] + base[1:]  # its YAML sets coarse only
    explicit = _short().stages
    assert Synthesizer(leap, _short()).stages == explicit
    scaled = Synthesizer(leap, replace(default_config(), iter_scale=0.5, stage_iters={"grasp": 3})).stages
    assert [s.iters for s in scaled] == [60, 20, 3]
    assert Synthesizer(shadow, default_config()).squeeze_scale == 1.5
    assert Synthesizer(shadow, replace(default_config(), squeeze_scale={"shadow_right": 1.0})).squeeze_scale == 1.0
    for h in (leap, shadow):  # the force-aware squeeze: the YAML's force, or the caller's (by name, then "*")
        assert Synthesizer(h, default_config()).squeeze_force == h.cfg.synthesis.squeeze_force
        assert Synthesizer(h, replace(default_config(), squeeze_force={"*": 0.0})).squeeze_force == 0.0
    both = replace(default_config(), squeeze_force={"shadow_right": 2.0, "*": 5.0})
    assert (Synthesizer(shadow, both).squeeze_force, Synthesizer(leap, both).squeeze_force) == (2.0, 5.0)
    with pytest.raises(ConfigError):
        Synthesizer(leap, replace(default_config(), squeeze_force={"*": -1.0}))
    with pytest.raises(ConfigError):
        Synthesizer(leap, replace(default_config(), stage_iters={"nope": 3}))
    with pytest.raises(ConfigError):
        Synthesizer(leap, replace(default_config(), iter_scale=0.0))


def test_stage_iterations_are_scaled_then_set_by_name():
    from dex_proposal.synthesis import default_stages, parse_stage_iters, scaled_stages

    stages = default_stages()
    half = scaled_stages(stages, 0.5)
    assert [s.iters for s in half] == [max(1, round(s.iters * 0.5)) for s in stages]
    assert [(s.name, s.kind, s.margin, s.keep) for s in half] == [(s.name, s.kind, s.margin, s.keep) for s in stages]
    assert parse_stage_iters("coarse=120, grasp=0") == {"coarse": 120, "grasp": 0}
    assert parse_stage_iters(["coarse=7", "fine=3"]) == {"coarse": 7, "fine": 3}
    assert parse_stage_iters("") == {}
    mixed = scaled_stages(stages, 0.5, {"coarse": 120, "grasp": 0})
    assert [s.iters for s in mixed] == [120, half[1].iters, 0]
    for bad in ("coarse", "coarse=x", "=3", "coarse=1.5"):
        with pytest.raises(ConfigError):
            parse_stage_iters(bad)
    with pytest.raises(ConfigError, match="no stage 'medium'"):
        scaled_stages(stages, 1.0, {"medium": 3})
    with pytest.raises(ConfigError):
        scaled_stages(stages, 0.0)
    with pytest.raises(ConfigError):
        scaled_stages(stages, 1.0, {"fine": -1})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(cylinder_surface):
    hand = HandModel("ur5e_leap")
    cfg = replace(_short(4, (10, 3, 3)), dtype="float64")
    cpu = Synthesizer(hand, cfg).run(cylinder_surface, seed=1)
    gpu = Synthesizer(HandModel("ur5e_leap"), replace(cfg, device="cuda")).run(cylinder_surface, seed=1)
    np.testing.assert_allclose(gpu.energy.numpy(), cpu.energy.numpy(), rtol=1e-4, atol=1e-4)


def test_pregrasp_is_raised_clear_of_the_table_for_a_flat_object():
    """A 2.5 cm flat ring on the table: the open pre-grasp's fingertips would touch the table (the
    arm planner refuses such a goal), so the pre-grasp wrist goes up until its collision spheres
    clear the table; the grasp itself is not moved, and the lift is only along +z."""
    torus = trimesh.creation.annulus(r_min=0.025, r_max=0.045, height=0.025)
    torus.apply_translation([0.0, 0.6, 0.0125])
    pts, nrm = _cloud(torus, 3000)
    surf = build_surface(pts, nrm, table_z=0.0)
    hand = HandModel("ur5e_leap")
    base = replace(_short(12, (40, 10, 10)), table_z=0.0)
    raised = Synthesizer(hand, base).run(surf, seed=0)
    flat = Synthesizer(hand, replace(base, pregrasp_max_lift=0.0)).run(surf, seed=0)
    torch.testing.assert_close(raised.grasp_T, flat.grasp_T)
    rise = raised.pregrasp_T[:, 2, 3] - flat.pregrasp_T[:, 2, 3]
    assert float(rise.max()) > 1e-3  # some pre-grasps needed raising
    assert float(rise.min()) >= 0 and float(rise.max()) <= base.pregrasp_max_lift + 1e-6
    torch.testing.assert_close(raised.pregrasp_T[:, :2], flat.pregrasp_T[:, :2])  # x, y rows of R|t unchanged
    T = raised.pregrasp_T.to(hand.dtype)
    fk = hand.kin.forward(hand.joints(raised.pregrasp_u.to(hand.dtype)), T)
    bottom = (fk.sphere_centers[..., 2] - hand.sphere_radii).amin(-1)
    needed = rise > 1e-9
    assert torch.all(bottom[needed & (rise < base.pregrasp_max_lift - 1e-6)] >= base.pregrasp_table_clearance - 1e-5)
