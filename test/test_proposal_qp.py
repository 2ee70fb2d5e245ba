"""Lower-level QP of the grasp energy: batched ADMM vs an interior-point reference (Clarabel),
envelope-theorem gradients vs finite differences, force closure vs one-sided grasps."""

from __future__ import annotations

import math

import clarabel
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dex_proposal.qp import (
    PyramidQP,
    QPConfig,
    force_directions,
    grasp_energy,
    reference_config,
    tangent_basis,
    wrench_basis,
)


def _reference(W: np.ndarray, b: np.ndarray, m: int, cfg: QPConfig) -> float:
    """min ||b - W lam||^2 s.t. lam >= 0, per-contact sums <= 1, total >= gamma (Clarabel, 1e-10)."""
    n = W.shape[1]
    P = sp.csc_matrix(2 * W.T @ W)
    q = -2 * W.T @ b
    S = np.kron(np.eye(m), np.ones((1, cfg.n_edges)))
    A = sp.csc_matrix(np.vstack([-np.eye(n), S, -np.ones((1, n))]))
    rhs = np.concatenate([np.zeros(n), np.ones(m), [-cfg.gamma]])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-10
    sol = clarabel.DefaultSolver(P, q, A, rhs, [clarabel.NonnegativeConeT(n + m + 1)], settings).solve()
    assert "Solved" in str(sol.status), sol.status
    x = np.asarray(sol.x)
    return float(np.sum((b - W @ x) ** 2))


def _random_grasps(batch: int, m: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(batch, m, 3, generator=g, dtype=dtype) * 0.05
    nrm = -pts / pts.norm(dim=-1, keepdim=True) + 0.5 * torch.randn(batch, m, 3, generator=g, dtype=dtype)
    return pts, nrm / nrm.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("m", [2, 4, 5])
def test_admm_matches_reference_solver(m):
    cfg = reference_config()
    pts, nrm = _random_grasps(8, m, seed=m)
    W = wrench_basis(pts, nrm, torch.zeros(3, dtype=torch.float64), cfg.mu, 0.05)
    b = cfg.beta * force_directions(torch.float64)
    sol = PyramidQP(m, cfg).solve(W, b)
    ref = np.array([[_reference(W[i].numpy(), b[j].numpy(), m, cfg) for j in range(6)] for i in range(W.shape[0])])
    np.testing.assert_allclose(sol.value.numpy(), ref, atol=1e-5, rtol=1e-5)
    # the returned forces satisfy the constraints
    lam = sol.lam.reshape(*sol.lam.shape[:-1], m, cfg.n_edges)
    assert float(lam.min()) >= 0
    assert float(lam.sum(-1).max()) <= 1 + 1e-6
    assert float(lam.sum((-1, -2)).min()) >= cfg.gamma - 1e-6
    # not a trivial batch: some directions cannot be resisted
    assert ref.max() > 0.1


def test_default_settings_converge_with_warm_starts():
    """The fast setting (few iterations per call) reaches the reference after a few warm-started calls."""
    m = 5
    pts, nrm = _random_grasps(16, m, seed=3)
    W = wrench_basis(pts, nrm, torch.zeros(3, dtype=torch.float64), 0.5, 0.05)
    b = force_directions(torch.float64)
    exact = torch.tensor([[_reference(W[i].numpy(), b[j].numpy(), m, reference_config()) for j in range(6)]
                          for i in range(W.shape[0])], dtype=torch.float64)
    fast = PyramidQP(m, QPConfig(iters=30))
    state, errs = None, []
    for _ in range(10):
        sol = fast.solve(W, b, state)
        state = sol.state
        errs.append(float((sol.value - exact).abs().max()))
    assert errs[-1] < 5e-3 and errs[-1] < errs[0] / 20


def test_solver_runs_in_float32_and_batches_independently():
    m = 3
    pts, nrm = _random_grasps(6, m, seed=7)
    W = wrench_basis(pts, nrm, torch.zeros(3, dtype=torch.float64), 0.5, 0.05)
    b = force_directions(torch.float64)
    cfg = QPConfig(iters=400)
    whole = PyramidQP(m, cfg).solve(W, b).value
    single = torch.cat([PyramidQP(m, cfg).solve(W[i:i + 1], b).value for i in range(6)])
    torch.testing.assert_close(whole, single)
    f32 = PyramidQP(m, cfg).solve(W.float(), b.float()).value
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.double().numpy(), whole.numpy(), atol=2e-3)


def test_tangent_basis_is_right_handed_orthonormal():
    g = torch.Generator().manual_seed(0)
    n = torch.randn(500, 3, generator=g, dtype=torch.float64)
    n = n / n.norm(dim=-1, keepdim=True)
    n[0] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    d, e = tangent_basis(n)
    for v in (d, e):
        np.testing.assert_allclose(v.norm(dim=-1).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose((d * n).sum(-1).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(torch.cross(d, e, dim=-1).numpy(), n.numpy(), atol=1e-12)


def test_energy_gradient_matches_finite_differences():
    """Envelope gradient of sum_j Q_j w.r.t. contact positions and normals vs central differences
    of the exactly solved value."""
    m = 4
    cfg = reference_config()
    pts, nrm = _random_grasps(3, m, seed=11)
    center = torch.zeros(3, dtype=torch.float64)
    solver = PyramidQP(m, cfg)
    p = pts.clone().requires_grad_(True)
    n = nrm.clone().requires_grad_(True)
    energy, _, _ = grasp_energy(p, n, center, 0.05, cfg, solver=solver)
    assert float(energy.min()) > 1e-3  # not at a trivially flat point
    gp, gn = torch.autograd.grad(energy.sum(), [p, n])

    def value(pp, nn):  # exact optimal values from the reference solver
        W = wrench_basis(pp, nn, center, cfg.mu, 0.05)
        b = cfg.beta * force_directions(torch.float64)
        return torch.tensor([sum(_reference(W[i].numpy(), b[j].numpy(), m, cfg) for j in range(6))
                             for i in range(W.shape[0])], dtype=torch.float64)

    h = 1e-5
    g = torch.Generator().manual_seed(5)
    for _ in range(4):
        i, c, k = (int(torch.randint(3, (1,), generator=g)), int(torch.randint(m, (1,), generator=g)),
                   int(torch.randint(3, (1,), generator=g)))
        for grad, which in ((gp, "p"), (gn, "n")):
            plus_p, minus_p, plus_n, minus_n = pts.clone(), pts.clone(), nrm.clone(), nrm.clone()
            if which == "p":
                plus_p[i, c, k] += h
                minus_p[i, c, k] -= h
            else:
                plus_n[i, c, k] += h
                minus_n[i, c, k] -= h
            fd = (value(plus_p, plus_n)[i] - value(minus_p, minus_n)[i]) / (2 * h)
            assert abs(float(fd) - float(grad[i, c, k])) < 1e-4 + 1e-3 * abs(float(fd)), (which, i, c, k, float(fd), float(grad[i, c, k]))


def _sphere_contacts(directions: list[tuple[float, float, float]], r: float = 0.04):
    d = torch.tensor(directions, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    return (r * d)[None], (-d)[None]  # inward normals


def test_force_closure_grasp_scores_better_than_one_sided():
    cfg = QPConfig(mu=0.5, iters=3000)
    # four contacts spread around a sphere (tetrahedron): force closure
    tet = [(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]
    # four contacts on one hemisphere cap: all push the same way
    cap = [(0.2, 0.0, 1.0), (-0.2, 0.0, 1.0), (0.0, 0.2, 1.0), (0.0, -0.2, 1.0)]
    # antipodal pinch: closure except for torque about the axis (forces only here: resists all six)
    pinch = [(1, 0, 0), (-1, 0, 0)]
    energies = {}
    for name, dirs in (("tet", tet), ("cap", cap), ("pinch", pinch)):
        p, n = _sphere_contacts(dirs)
        e, per_dir, _ = grasp_energy(p, n, torch.zeros(3, dtype=torch.float64), 0.04, cfg)
        energies[name] = (float(e), per_dir[0].numpy())
    assert energies["tet"][0] < 1e-3
    assert energies["pinch"][0] < 0.05
    assert energies["cap"][0] > 0.5
    # the one-sided grasp cannot pull the object up (+z force needs a contact pushing from below)
    assert energies["cap"][1][4] > 0.9 * cfg.beta**2
    assert math.isfinite(energies["cap"][0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    m = 5
    pts, nrm = _random_grasps(64, m, seed=2)
    W = wrench_basis(pts, nrm, torch.zeros(3, dtype=torch.float64), 0.5, 0.05)
    b = force_directions(torch.float64)
    cfg = QPConfig(iters=200)
    cpu = PyramidQP(m, cfg).solve(W, b).value
    gpu = PyramidQP(m, cfg).solve(W.cuda(), b.cuda()).value.cpu()
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_woodbury_factor_matches_the_direct_inverse(dtype):
    """One rho for the batch: the KKT inverse by Woodbury (rank-6 update of a constant matrix) is as
    close to the exact (float64) inverse as the batched Cholesky one, also in float32 and for a small
    rho (an ill-conditioned KKT matrix, where float32 loses digits either way)."""
    m = 5
    pts, nrm = _random_grasps(16, m, seed=3, dtype=dtype)
    W = wrench_basis(pts, nrm, torch.zeros(3, dtype=dtype), 0.5, 0.05)
    qp = PyramidQP(m, QPConfig(), groups=[([0], 0.5)])
    P = W.transpose(1, 2) @ W
    ata = qp._mats(W)[1]
    eps = 1e-12 if dtype == torch.float64 else 3e-6
    for r in (0.5, 1e-3, 40.0):
        rho = torch.full((16, 6), r, dtype=dtype)
        exact = torch.linalg.inv(P.double()[:, None] + qp.cfg.sigma * torch.eye(qp.n, dtype=torch.float64)
                                 + r * ata.double())
        direct = qp._factor(P, rho, ata)
        wood = qp._factor(P, rho, ata, W)
        assert wood.shape == direct.shape == (16, 1, qp.n, qp.n)
        err_wood = float((wood.double() - exact).abs().max())
        err_direct = float((direct.double() - exact).abs().max())
        assert err_wood <= max(eps * float(exact.abs().max()), 1.5 * err_direct), (r, err_wood, err_direct)
    mixed = torch.full((16, 6), 0.5, dtype=dtype)
    mixed[3, 2] = 2.0  # rho differs between problems: the direct path, one factor per direction
    assert qp._factor(P, mixed, ata, W).shape == (16, 6, qp.n, qp.n)
