"""Lower-level problem of BODex: a batched friction-pyramid QP and its envelope gradient (torch).

For each grasp ``b`` of a batch and each desired wrench direction ``t_j`` (six: +-x, +-y, +-z
forces, zero torque), the lower level asks for contact forces that best produce ``beta t_j``::

    Q_j = min_f || beta t_j - sum_i G_i f_i ||^2
          s.t.  f_i in the 8-edge friction pyramid of contact i, its normal part <= 1,
                sum_i (normal part of f_i) >= gamma.

Conventions (stated once):

* ``points`` (B, m, 3) [m] contact positions and ``normals`` (B, m, 3) *inward* unit normals (the
  direction a finger pushes, into the object), world frame; ``center`` (B, 3) [m] is the wrench
  reference point (the object's centre). Torques are divided by ``torque_length`` [m] so that
  force and torque rows are commensurate (a scale-free energy: ``r x f / L``).
* The pyramid is parameterised by non-negative edge weights: contact ``i`` applies
  ``f_i = sum_k lam_ik (n_i + mu (cos th_k d_i + sin th_k e_i))``, ``th_k = 2 pi k / 8``, so its
  normal part is ``sum_k lam_ik``. The edges lie on the Coulomb cone (inscribed pyramid, the
  conservative choice). The wrench basis ``W`` (B, 6, 8m) stacks the edges' wrenches.
* In these variables the constraints do not depend on the grasp, only ``W`` does. The QP
  (``min ||b - W lam||^2``, ``lam >= 0``, per-contact ``sum_k lam_ik <= 1``, ``sum lam >= gamma``)
  is solved by a batched OSQP-style ADMM (:class:`PyramidQP`): one ``(8m x 8m)`` linear system per
  problem, factorised once per solve and reused by every iteration, so an iteration is a few
  batched mat-vecs (CPU or CUDA). Warm starts carry ``(x, z, y, rho)`` from one upper-level
  iteration to the next.
* Gradient: by the envelope theorem (constraints independent of ``W``),
  ``dQ/dW = -2 (b - W lam*) lam*^T``. :func:`grasp_energy` evaluates ``||b - W(points, normals)
  lam*.detach()||^2`` in autograd, which yields exactly that gradient w.r.t. the contact points and
  normals (and, through them, the hand pose).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from dex_proposal.errors import ConfigError, ShapeError

N_EDGES = 8
_INF = 1e20


@dataclass(frozen=True)
class QPConfig:
    """Lower-level problem and solver settings.

    Attributes:
        mu: Friction coefficient of the pyramid [-] (synthesis may use less than the simulator's).
        beta: Magnitude of the desired wrench [-] (in units of the per-contact normal-force bound).
        gamma: Minimum total normal force [-] (avoids the trivial zero solution).
        k_lower: Minimum normal force of every contact [-] (0: a contact may stay idle; > 0: every
            finger must take part, as in BODex's released configs).
        n_edges: Pyramid edges (8 as in BODex).
        rho: Initial ADMM penalty.
        sigma: ADMM proximal regularisation.
        alpha: ADMM over-relaxation (1.6 as in OSQP).
        iters: ADMM iterations per call (warm-started calls need few).
        adapt_every: Re-balance ``rho`` every this many iterations (0: never).
        eps_abs, eps_rel: Stopping tolerances (checked every ``check_every`` iterations).
        check_every: Convergence check period; 0 = run exactly ``iters`` iterations.
    """

    mu: float = 0.5
    beta: float = 1.0
    gamma: float = 1.0
    k_lower: float = 0.0
    n_edges: int = N_EDGES
    rho: float = 0.5
    sigma: float = 1e-6
    alpha: float = 1.6
    iters: int = 30
    adapt_every: int = 0
    eps_abs: float = 1e-6
    eps_rel: float = 1e-6
    check_every: int = 0

    def validated(self) -> "QPConfig":
        for name in ("mu", "beta", "gamma", "rho", "sigma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"qp.{name}", f"must be > 0, got {getattr(self, name)}")
        if not 0 < self.alpha < 2:
            raise ConfigError("qp.alpha", f"must be in (0, 2), got {self.alpha}")
        if not 0 <= self.k_lower <= 1:
            raise ConfigError("qp.k_lower", f"must be in [0, 1], got {self.k_lower}")
        if self.n_edges < 3:
            raise ConfigError("qp.n_edges", f"must be >= 3, got {self.n_edges}")
        if self.iters < 1:
            raise ConfigError("qp.iters", f"must be >= 1, got {self.iters}")
        return self


def reference_config() -> QPConfig:
    """Settings that solve to high accuracy (tests, reference values): adaptive rho, 1e-10 tolerances
    (ADMM's tail is slow: up to 8000 iterations)."""
    return QPConfig(iters=8000, adapt_every=25, eps_abs=1e-10, eps_rel=1e-10, check_every=25)


_DIRECTIONS: dict = {}


def force_directions(dtype=torch.float32, device="cpu") -> torch.Tensor:
    """(6, 6) desired unit wrenches ``t_j``: +x, -x, +y, -y, +z, -z forces with zero torque (one
    shared tensor per dtype and device: do not modify it in place)."""
    key = (dtype, str(device))
    if key not in _DIRECTIONS:
        t = torch.zeros(6, 6, dtype=torch.float64)
        for j in range(3):
            t[2 * j, j] = 1.0
            t[2 * j + 1, j] = -1.0
        _DIRECTIONS[key] = t.to(dtype=dtype, device=device)
    return _DIRECTIONS[key]


def tangent_basis(normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit tangents ``d, e`` (..., 3) with ``d x e = n`` for unit normals ``n`` (..., 3).

    The helper axis is z unless ``|n_z| > 0.9`` (then x): smooth everywhere except at that switch,
    where the pyramid only turns about ``n`` (the energy changes by the pyramid's small anisotropy).
    """
    ez = torch.zeros_like(normals)
    ez[..., 2] = 1.0
    ex = torch.zeros_like(normals)
    ex[..., 0] = 1.0
    helper = torch.where(normals[..., 2:3].abs() > 0.9, ex, ez)
    e = torch.cross(normals, helper, dim=-1)
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    d = torch.cross(e, normals, dim=-1)
    return d, e


def wrench_basis(points: torch.Tensor, normals: torch.Tensor, center: torch.Tensor, mu: float,
                 torque_length: torch.Tensor | float, n_edges: int = N_EDGES) -> torch.Tensor:
    """Wrench of every pyramid edge, ``W`` (B, 6, n_edges * m), differentiable.

    Args:
        points: (B, m, 3) contact positions [m].
        normals: (B, m, 3) inward unit normals.
        center: (B, 3) or (3,) wrench reference point [m].
        mu: Friction coefficient.
        torque_length: Scalar or (B,) [m]; torques are divided by it.
        n_edges: Pyramid edges.

    Column ``i * n_edges + k`` is edge ``k`` of contact ``i``: ``[F_ik; (p_i - c) x F_ik / L]``.
    """
    if points.ndim != 3 or points.shape[-1] != 3 or normals.shape != points.shape:
        raise ShapeError(f"points and normals must both be (B, m, 3), got {tuple(points.shape)}, {tuple(normals.shape)}")
    batch, m, _ = points.shape
    d, e = tangent_basis(normals)
    th = torch.arange(n_edges, dtype=points.dtype, device=points.device) * (2 * math.pi / n_edges)
    c, s = torch.cos(th), torch.sin(th)
    forces = normals[:, :, None, :] + mu * (c[None, None, :, None] * d[:, :, None, :] + s[None, None, :, None] * e[:, :, None, :])
    center = center.expand(batch, 3) if center.ndim == 1 else center
    length = torch.as_tensor(torque_length, dtype=points.dtype, device=points.device)
    length = length.reshape(-1, 1, 1, 1) if length.ndim == 1 else length
    arm = (points - center[:, None, :])[:, :, None, :].expand_as(forces)
    torques = torch.cross(arm, forces, dim=-1) / length
    w = torch.cat([forces, torques], -1)  # (B, m, E, 6)
    return w.reshape(batch, m * n_edges, 6).transpose(1, 2)


@dataclass
class QPState:
    """ADMM iterate of a batch of problems, for warm starts. Shapes (B, J, n) with ``n`` variables
    and ``n + m + 1`` constraints; ``rho`` (B, J)."""

    x: torch.Tensor
    z: torch.Tensor
    y: torch.Tensor
    rho: torch.Tensor

    def detach(self) -> "QPState":
        return QPState(self.x.detach(), self.z.detach(), self.y.detach(), self.rho.detach())

    def select(self, index: torch.Tensor) -> "QPState":
        """Rows ``index`` of the batch (for re-ranking / pruning)."""
        return QPState(self.x[index], self.z[index], self.y[index], self.rho[index])


@dataclass
class QPSolution:
    """Solution of a batch: ``lam`` (B, J, n) edge weights, ``value`` (B, J) = ||b - W lam||^2,
    ``prim_res``/``dual_res`` (B, J) ADMM residuals (inf-norm; these three are None when the solve
    was asked for no residuals), ``iters`` run, ``state`` for warm starts."""

    lam: torch.Tensor
    value: torch.Tensor | None
    prim_res: torch.Tensor | None
    dual_res: torch.Tensor | None
    iters: int
    state: QPState


def _spd_inverse(m: torch.Tensor) -> torch.Tensor:
    """Inverse of a batch of symmetric positive-definite matrices (..., n, n) by Cholesky. A matrix
    whose factorisation fails (a grasp whose contacts went non-finite, or rounding on a degenerate
    one) gets the identity's instead, so that one bad grasp cannot stop the batch: the batch's rows
    are independent, that grasp's solution is meaningless (or NaN) and it is rejected later."""
    chol, info = torch.linalg.cholesky_ex(m)
    if bool((info != 0).any()):
        eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device).expand_as(m)
        m = torch.where((info != 0)[..., None, None], eye, m)
        chol = torch.linalg.cholesky(m)
    return torch.cholesky_inverse(chol)


class PyramidQP:
    """Batched ADMM for ``min ||b_j - W lam||^2`` over the friction-pyramid set (no autograd).

    Args:
        n_contacts: ``m``.
        cfg: Solver settings.
        groups: Extra lower bounds on the summed normal force of contact groups,
            ``[(contact indices, lower), ...]`` (e.g. the thumb must push at least 0.5).

    Standard form ``min 1/2 x^T P x + q^T x`` s.t. ``l <= A x <= u`` with ``P = W^T W``,
    ``q = -W^T b``, ``A = [I; S; 1^T; G]`` (``S`` sums each contact's edges, ``G`` each group's),
    ``l = [0; k_lower; gamma; group lowers]``, ``u = [inf; 1; inf; inf]``. ``A^T A`` is constant, so
    the KKT matrix ``P + sigma I + rho A^T A`` is inverted once per solve (and per rho change) and
    every iteration is a few batched mat-vecs. ``P = W^T W`` has rank 6, so when every problem of
    the batch has the same ``rho`` (no adaptation: the synthesiser's case) the inverse is
    ``M^-1 - U^T (I_6 + U W^T)^-1 U`` with the constant ``M = sigma I + rho A^T A`` (inverted once
    per ``rho``) and ``U = W M^-1`` (Woodbury): a 6 x 6 factorisation per grasp instead of an
    ``n x n`` one (LEAP: n = 32, Shadow: 40).
    """

    def __init__(self, n_contacts: int, cfg: QPConfig | None = None,
                 groups: list[tuple[list[int], float]] | tuple = ()):
        self.cfg = (cfg or QPConfig()).validated()
        self.m = int(n_contacts)
        if self.m < 1:
            raise ConfigError("qp.n_contacts", "need at least one contact")
        self.n = self.m * self.cfg.n_edges
        e = self.cfg.n_edges
        rows = [torch.eye(self.n, dtype=torch.float64)]
        rows.append(torch.kron(torch.eye(self.m, dtype=torch.float64), torch.ones(1, e, dtype=torch.float64)))
        rows.append(torch.ones(1, self.n, dtype=torch.float64))
        lo = [torch.zeros(self.n), torch.full((self.m,), self.cfg.k_lower), torch.tensor([self.cfg.gamma])]
        hi = [torch.full((self.n,), _INF), torch.ones(self.m), torch.tensor([_INF])]
        for i, (idx, lower) in enumerate(groups):
            if not idx or any(not 0 <= j < self.m for j in idx):
                raise ConfigError(f"qp.groups[{i}]", f"contact indices must be in [0, {self.m}), got {idx}")
            row = torch.zeros(1, self.n, dtype=torch.float64)
            for j in idx:
                row[0, j * e:(j + 1) * e] = 1.0
            rows.append(row)
            lo.append(torch.tensor([float(lower)]))
            hi.append(torch.tensor([_INF]))
        self.A64 = torch.cat(rows)
        self.lo64 = torch.cat(lo).double()
        self.hi64 = torch.cat(hi).double()
        if float(self.lo64[self.n + self.m:].max()) > self.m + 1e-9:
            raise ConfigError("qp.gamma", "a lower bound exceeds what the contacts can push (1 each)")
        self._cache: dict = {}
        self._minv: dict = {}

    def _mats(self, like: torch.Tensor):
        key = (like.dtype, like.device)
        if key not in self._cache:
            A = self.A64.to(like)
            self._cache[key] = (A, A.T @ A, self.lo64.to(like), self.hi64.to(like))
        return self._cache[key]

    def _m_inverse(self, rho: float, like: torch.Tensor) -> torch.Tensor:
        """``(sigma I + rho A^T A)^-1`` (n, n), computed in float64 once per ``rho``, dtype and device."""
        key = (float(rho), like.dtype, like.device)
        if key not in self._minv:
            if len(self._minv) >= 16:  # adaptive rho visits many values: keep the cache small
                self._minv.clear()
            m = self.cfg.sigma * torch.eye(self.n, dtype=torch.float64) + float(rho) * (self.A64.T @ self.A64)
            self._minv[key] = torch.linalg.inv(m).to(like)
        return self._minv[key]

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._mats(x)[0].T

    def _AT(self, v: torch.Tensor) -> torch.Tensor:
        return v @ self._mats(v)[0]

    def _factor(self, P: torch.Tensor | None, rho: torch.Tensor, ata: torch.Tensor,
                W: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse (B, J or 1, n, n) of the KKT matrix ``P + sigma I + rho A^T A`` (SPD, >= rho I);
        one per grasp when every direction shares its rho (ReLU-QP style: the iterations are then
        plain batched mat-vecs). With ``W`` (``P = W^T W``; ``P`` may then be None) and one rho for
        the batch, by Woodbury; else by batched Cholesky."""
        if W is not None:
            r0 = rho.reshape(-1)[:1]
            if bool((rho == r0).all()):  # one rho for the whole batch: Woodbury (see class doc)
                minv = self._m_inverse(float(r0), W)
                u = W @ minv  # (B, 6, n)
                small = u @ W.transpose(1, 2) + torch.eye(6, dtype=W.dtype, device=W.device)
                inner = _spd_inverse(small)  # (B, 6, 6), >= I in exact arithmetic
                return (minv - u.transpose(1, 2) @ (inner @ u))[:, None]
        if P is None:
            P = W.transpose(1, 2) @ W
        eye = torch.eye(self.n, dtype=P.dtype, device=P.device)
        if bool((rho == rho[:, :1]).all()):
            rho = rho[:, :1]
        kkt = P[:, None] + self.cfg.sigma * eye + rho[..., None, None] * ata
        return _spd_inverse(kkt)

    def initial_state(self, batch: int, n_dir: int, dtype, device) -> QPState:
        """A start that spreads the largest lower bound evenly over every edge."""
        need = max(float(self.lo64[self.n + self.m:].max()) / self.m, self.cfg.k_lower, 1e-3)
        x = torch.full((batch, n_dir, self.n), need / self.cfg.n_edges, dtype=dtype, device=device)
        z = self._A(x)
        y = torch.zeros_like(z)
        rho = torch.full((batch, n_dir), self.cfg.rho, dtype=dtype, device=device)
        return QPState(x, z, y, rho)

    @torch.no_grad()
    def solve(self, W: torch.Tensor, b: torch.Tensor, state: QPState | None = None,
              iters: int | None = None, residuals: bool = True) -> QPSolution:
        """Solve for every grasp and every direction.

        Args:
            W: (B, 6, n) wrench basis (:func:`wrench_basis`).
            b: (J, 6) desired wrenches (already scaled by beta).
            state: Warm start (shapes must match) or None.
            iters: Override ``cfg.iters``.
            residuals: Also report ``value``, ``prim_res`` and ``dual_res`` (False: None, saves
                a few batched products per call).
        """
        cfg = self.cfg
        W = W.detach()
        if W.ndim != 3 or W.shape[1] != 6 or W.shape[2] != self.n:
            raise ShapeError(f"W must be (B, 6, {self.n}), got {tuple(W.shape)}")
        batch, n_dir = W.shape[0], b.shape[0]
        if state is None or state.x.shape != (batch, n_dir, self.n):
            state = self.initial_state(batch, n_dir, W.dtype, W.device)
        x, z, y, rho = state.x, state.z, state.y, state.rho  # never changed in place below
        q = -torch.einsum("bkn,jk->bjn", W, b)  # (B, J, n)
        A, ata, lo, hi = self._mats(W)
        AT = A.T
        kinv = self._factor(None, rho, ata, W)  # P = W^T W is never formed on the Woodbury path

        def p_times(v: torch.Tensor) -> torch.Tensor:  # P v = W^T (W v), (B, J, n)
            return torch.einsum("bkn,bjk->bjn", W, torch.einsum("bkn,bjn->bjk", W, v))

        iters = iters or cfg.iters
        a, sigma = cfg.alpha, cfg.sigma
        done = 0
        for it in range(1, iters + 1):
            rhs = sigma * x - q + (rho[..., None] * z - y) @ A
            # kinv is symmetric: rhs @ kinv is one batched product, with no (B, J, n, n) expansion
            # when every direction shares its factor
            xt = rhs @ kinv[:, 0] if kinv.shape[1] == 1 else (kinv @ rhs[..., None]).squeeze(-1)
            zt = xt @ AT
            x = a * xt + (1 - a) * x
            zr = a * zt + (1 - a) * z
            zn = torch.minimum(torch.maximum(zr + y / rho[..., None], lo), hi)
            y = y + rho[..., None] * (zr - zn)
            z = zn
            done = it
            check = cfg.check_every and it % cfg.check_every == 0
            adapt = cfg.adapt_every and it % cfg.adapt_every == 0
            if check or adapt:
                Ax = self._A(x)
                Px = p_times(x)
                ATy = self._AT(y)
                rp = (Ax - z).abs().amax(-1)
                rd = (Px + q + ATy).abs().amax(-1)
                if check:
                    ep = cfg.eps_abs + cfg.eps_rel * torch.maximum(Ax.abs().amax(-1), z.abs().amax(-1))
                    ed = cfg.eps_abs + cfg.eps_rel * torch.stack(
                        [Px.abs().amax(-1), ATy.abs().amax(-1), q.abs().amax(-1)]).amax(0)
                    if bool(((rp <= ep) & (rd <= ed)).all()):
                        break
                if adapt:
                    num = rp / torch.maximum(Ax.abs().amax(-1), z.abs().amax(-1)).clamp_min(1e-12)
                    den = rd / torch.stack([Px.abs().amax(-1), ATy.abs().amax(-1), q.abs().amax(-1)]).amax(0).clamp_min(1e-12)
                    new_rho = (rho * torch.sqrt(num / den.clamp_min(1e-12))).clamp(1e-6, 1e6)
                    ratio = new_rho / rho
                    if bool(((ratio > 5) | (ratio < 0.2)).any()):
                        rho = torch.where((ratio > 5) | (ratio < 0.2), new_rho, rho)
                        kinv = self._factor(None, rho, ata, W)
        # polish: the x iterate can be slightly infeasible; report on the projected point z[:n]
        lam = z[..., : self.n].clamp_min(0.0)
        if not residuals:
            return QPSolution(lam, None, None, None, done, QPState(x, z, y, rho))
        value = (b[None] - torch.einsum("bkn,bjn->bjk", W, lam)).square().sum(-1)
        Ax = self._A(x)
        Px = p_times(x)
        rp = (Ax - z).abs().amax(-1)
        rd = (Px + q + self._AT(y)).abs().amax(-1)
        return QPSolution(lam, value, rp, rd, done, QPState(x, z, y, rho))


def grasp_energy(points: torch.Tensor, normals: torch.Tensor, center: torch.Tensor,
                 torque_length: torch.Tensor | float, cfg: QPConfig | None = None,
                 state: QPState | None = None, solver: PyramidQP | None = None,
                 directions: torch.Tensor | None = None, iters: int | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, QPSolution]:
    """BODex grasp energy ``sum_j Q_j`` with its envelope-theorem gradient.

    Args:
        points: (B, m, 3) contact positions [m] (differentiable).
        normals: (B, m, 3) inward unit normals (differentiable).
        center: (B, 3) or (3,) object centre [m].
        torque_length: [m] torque normalisation, scalar or (B,).
        cfg: QP settings; ``solver`` may be passed to reuse one.
        state: Warm start from the previous call.
        directions: (J, 6) unit desired wrenches (default :func:`force_directions`).
        iters: Override the solver's ADMM iteration count for this call.

    Returns:
        ``(energy (B,), per_direction (B, J), solution)``; ``energy`` carries the gradient.
    """
    cfg = cfg or (solver.cfg if solver else QPConfig())
    solver = solver or PyramidQP(points.shape[1], cfg)
    directions = force_directions(points.dtype, points.device) if directions is None else directions
    b = cfg.beta * directions
    W = wrench_basis(points, normals, center, cfg.mu, torque_length, cfg.n_edges)
    sol = solver.solve(W, b, state, iters, residuals=False)
    residual = b[None] - torch.einsum("bkn,bjn->bjk", W, sol.lam)
    per_dir = residual.square().sum(-1)
    return per_dir.sum(-1), per_dir, sol


def with_overrides(cfg: QPConfig, **kw) -> QPConfig:
    """``dataclasses.replace`` + validation."""
    return replace(cfg, **kw).validated()
