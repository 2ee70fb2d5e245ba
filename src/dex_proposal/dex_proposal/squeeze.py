"""Force-aware squeeze: the hand's position targets that press a grasp's contacts with balanced forces.

BODex squeezes by moving the hand's joint targets past the grasp, ``squeeze = grasp + s (grasp -
pregrasp)``. With position servos that overshoot becomes fingertip forces ``J^-T kp (squeeze - q)``
that nothing balances: a finger whose pre-grasp -> grasp motion was long, or whose servo is stiff,
pushes harder than the ones opposite it, and a light object is pushed out of the hand before any load
is applied (measured, floating-hand protocol, Shadow, 30 g ball and box, 8 grasps each: 0/8 and 1/8
held at ``s = 1.5``, 4/8 and 5/8 at ``s = 0.5``, most failures moving the object > 5 cm during the
squeeze itself).

Here the squeeze is computed from the grasp's contacts instead:

1. contact forces ``f_i`` that balance each other: the lower-level QP of :mod:`dex_proposal.qp` with
   a zero desired wrench, ``min ||sum_i G_i f_i||^2`` over the friction pyramids, every contact
   pushing at least ``k_lower`` and the thumb and the fingers at least their group bounds;
2. scaled so that their normal components sum to ``force`` [N];
3. the actuator torques that exert them, ``tau = sum_i J_i^T f_i`` with ``J_i = d p_i / d u`` the
   Jacobian of the contact point (fixed to its fingertip link) with respect to the actuated values
   (virtual work: for a coupled actuator ``u = q_1 + q_2`` this is the tendon force);
4. the position targets whose servo error gives those torques once the fingers are blocked by the
   object, ``squeeze = grasp + tau / kp`` (the hand's ``hand.servo.kp`` [N m/rad]), plus the
   closing motion of fingers that stop short of the surface (:func:`closing_motion`);
   scaled down together (balance kept) where a torque would exceed ``torque_fraction`` of the
   actuator's force limit, then clamped to the joint limits.

The real hands' firmware gains differ from the simulated servos'; their ``kp`` in the robot YAML is
what this uses, so the force is only as right as those gains.

Shapes: ``B`` grasps, ``m`` fingers, ``n_act`` actuated values. Frames: all points and normals in the
frame of ``world_T_root`` (the cloud frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dex_proposal.errors import ConfigError
from dex_proposal.qp import PyramidQP, QPConfig, wrench_basis


@dataclass(frozen=True)
class ForceSqueezeConfig:
    """Settings of :func:`force_squeeze`.

    Attributes:
        force: [N] sum of the contacts' normal forces to press with.
        mu: Friction coefficient of the internal-force pyramids (low: rely on opposing normals).
        k_lower: Minimum share of every contact's normal force (relative to the largest, 1).
        torque_fraction: Fraction of each actuator's force limit the squeeze may ask for.
        qp_iters: ADMM iterations of the internal-force problem.
    """

    force: float = 4.0
    mu: float = 0.2
    k_lower: float = 0.3
    torque_fraction: float = 0.8
    qp_iters: int = 400

    def validated(self) -> "ForceSqueezeConfig":
        if not self.force > 0:
            raise ConfigError("squeeze.force", f"must be > 0 [N], got {self.force}")
        if not 0 < self.torque_fraction <= 1:
            raise ConfigError("squeeze.torque_fraction", f"must be in (0, 1], got {self.torque_fraction}")
        if not 0 <= self.k_lower <= 1:
            raise ConfigError("squeeze.k_lower", f"must be in [0, 1], got {self.k_lower}")
        return self


def internal_forces(points: torch.Tensor, normals: torch.Tensor, center: torch.Tensor, torque_length: float,
                    cfg: ForceSqueezeConfig, groups=()) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced contact forces of a grasp (step 1 of the module doc), unit scale.

    Args:
        points: (B, m, 3) contact points [m]; normals: (B, m, 3) inward unit normals.
        center: (3,) or (B, 3) torque reference [m]; torque_length: [m] torque normalisation.
        groups: Group lower bounds as for :class:`dex_proposal.qp.PyramidQP`.

    Returns:
        ``(forces (B, m, 3), imbalance (B,))``: forces in units where the largest allowed normal
        force of one contact is 1; imbalance = ``|sum_i G_i f_i| / sum_i f_i.n_i`` (0 = balanced).
    """
    batch, m, _ = points.shape
    qcfg = QPConfig(mu=cfg.mu, beta=1.0, gamma=1.0, k_lower=cfg.k_lower, iters=cfg.qp_iters)
    solver = PyramidQP(m, qcfg, groups)
    W = wrench_basis(points, normals, center, cfg.mu, torque_length, qcfg.n_edges)  # (B, 6, m E)
    zero = torch.zeros(1, 6, dtype=points.dtype, device=points.device)
    lam = solver.solve(W, zero, None, cfg.qp_iters, residuals=False).lam[:, 0]  # (B, m E)
    edges = W[:, :3, :].transpose(1, 2).reshape(batch, m, qcfg.n_edges, 3)  # edge force directions
    lam = lam.clamp_min(0).reshape(batch, m, qcfg.n_edges)
    forces = (lam[..., None] * edges).sum(2)  # (B, m, 3)
    normal_sum = (forces * normals).sum((-1, -2)).clamp_min(1e-12)
    imbalance = torch.einsum("bkn,bn->bk", W, lam.reshape(batch, -1)).norm(dim=-1) / normal_sum
    return forces, imbalance


def contact_jacobian(hand, world_T_root: torch.Tensor, u: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(B, m, 3, n_act) Jacobian ``d p_i / d u`` of each finger's contact point, held fixed to the
    finger's distal link (the link of its pad), at the actuated values ``u`` (B, n_act)."""
    body = hand.kin.contacts.body_index[hand.pad_index_t]  # (m,) distal link per finger
    uu = u.detach().clone().requires_grad_(True)
    with torch.enable_grad():  # one FK: the contact's link-frame position from its detached values
        links = hand.forward(uu, world_T_root).fk.links
        rot, pos = links.rot[:, body], links.pos[:, body]  # (B, m, 3, 3), (B, m, 3)
        local = torch.einsum("bmji,bmj->bmi", rot.detach(), points - pos.detach())  # R^T (p - o)
        p = torch.einsum("bmij,bmj->bmi", rot, local) + pos
        rows = []
        for i in range(p.shape[1]):
            for c in range(3):
                (g,) = torch.autograd.grad(p[:, i, c].sum(), uu, retain_graph=True)
                rows.append(g)
    batch, m = p.shape[:2]
    return torch.stack(rows, 1).reshape(batch, m, 3, -1)


def closing_motion(J: torch.Tensor, gaps: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """(B, n_act) the smallest actuated motion that moves each finger's contact point by its gap
    (B, m) [m] (where > 0) along its inward normal (B, m, 3), to first order, with the finger's own
    actuators only (those that move no other finger's contact: not the wrist):
    ``du_i = g_i r_i / |r_i|^2`` with ``r_i = J_i^T n_i`` restricted to them."""
    moves = J.abs().amax(-2) > 1e-9  # (B, m, n_act): actuator a moves finger i's contact
    own = moves & (moves.sum(1, keepdim=True) == 1)
    rows = torch.einsum("bmcn,bmc->bmn", J, normals) * own.to(J.dtype)  # d(normal motion)/du, own actuators
    norm2 = rows.square().sum(-1, keepdim=True)
    step = torch.where(norm2 > 1e-12, gaps.clamp_min(0)[..., None] * rows / norm2.clamp_min(1e-12), torch.zeros_like(rows))
    return step.sum(1)  # the fingers' own actuators are disjoint


def force_squeeze(hand, world_T_root: torch.Tensor, u_grasp: torch.Tensor, points: torch.Tensor,
                  normals: torch.Tensor, gaps: torch.Tensor, center: torch.Tensor, torque_length: float,
                  cfg: ForceSqueezeConfig, groups=()) -> tuple[torch.Tensor, dict]:
    """Squeeze targets of a batch of grasps (see module doc).

    Args:
        hand: :class:`dex_proposal.hand.HandModel`.
        world_T_root: (B, 4, 4) grasp wrist poses; u_grasp: (B, n_act) grasp actuated values [rad].
        points: (B, m, 3) contact points on the surface [m]; normals: (B, m, 3) inward unit normals.
        gaps: (B, m) signed distance of each finger's contact part to the surface [m] (> 0: short of it).
        center: (3,) or (B, 3) object centre [m]; torque_length: [m].

    Returns:
        ``(squeeze_u (B, n_act), info)``; info: ``forces`` (B, m, 3) [N], ``torque`` (B, n_act) [N m],
        ``imbalance`` (B,), ``scale`` (B,) (< 1 where the force limits cut the force); empty when a
        grasp had non-finite inputs (its squeeze is then its grasp, clamped to the limits).
    """
    cfg = cfg.validated()
    ok = (torch.isfinite(points).all(-1).all(-1) & torch.isfinite(normals).all(-1).all(-1)
          & torch.isfinite(gaps).all(-1) & torch.isfinite(u_grasp).all(-1) & torch.isfinite(world_T_root).all(-1).all(-1))
    if not bool(ok.all()):  # diverged grasps (rejected later as non-finite) squeeze nothing
        squeeze = hand.clamp(torch.nan_to_num(u_grasp))
        if bool(ok.any()):
            part, info = force_squeeze(hand, world_T_root[ok], u_grasp[ok], points[ok], normals[ok], gaps[ok],
                                       center[ok] if center.ndim == 2 else center, torque_length, cfg, groups)
            squeeze[ok] = part
        return squeeze, {}
    servo = hand.cfg.servo
    like = dict(dtype=u_grasp.dtype, device=u_grasp.device)
    kp = torch.as_tensor(servo.kp, **like)
    limit = torch.as_tensor(servo.force_limit, **like)
    if not bool((kp > 0).all()):
        raise ConfigError("hand.servo.kp", "the force squeeze needs kp > 0 for every actuator")
    unit, imbalance = internal_forces(points, normals, center, torque_length, cfg, groups)
    normal_sum = (unit * normals).sum((-1, -2)).clamp_min(1e-12)
    forces = unit * (cfg.force / normal_sum)[:, None, None]  # [N]
    J = contact_jacobian(hand, world_T_root, u_grasp, points)  # (B, m, 3, n_act)
    torque = torch.einsum("bmcn,bmc->bn", J, forces)
    close = closing_motion(J, gaps, normals)
    ratio = torch.where(limit > 0, torque.abs() / (cfg.torque_fraction * limit).clamp_min(1e-12), torch.zeros_like(torque))
    scale = 1.0 / ratio.amax(-1).clamp_min(1.0)
    torque = torque * scale[:, None]
    squeeze = hand.clamp(u_grasp + close + torque / kp)
    return squeeze, {"forces": forces * scale[:, None, None], "torque": torque, "imbalance": imbalance, "scale": scale}
