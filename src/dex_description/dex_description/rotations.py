"""Rotation conversions in torch, batched over any leading dimensions.

Conventions (pytransform3d-style, stated once):

* rotation matrices ``R`` have shape ``(..., 3, 3)`` and act on column vectors: ``v_a = R_ab @ v_b``;
* quaternions are ``(..., 4)`` in MuJoCo's ``(w, x, y, z)`` order, unit norm, ``q`` and ``-q`` equal;
* the continuous 6-D representation (Zhou et al., CVPR 2019) is the first two *columns* of ``R``
  concatenated, ``(..., 6)``; :func:`rot6d_to_matrix` accepts any (non-degenerate) input and
  Gram-Schmidt-orthonormalises it, so it is safe as an optimisation variable;
* homogeneous transforms are ``(..., 4, 4)``.
"""

from __future__ import annotations

import torch


def quat_to_matrix(quat: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (w, x, y, z) -> (..., 3, 3) rotation matrix. Input is normalised first."""
    q = quat / quat.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    row0 = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1)
    row1 = torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1)
    row2 = torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)
    return torch.stack([row0, row1, row2], -2)


def matrix_to_quat(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion (w, x, y, z) with w >= 0.

    Uses the numerically best of the four Shepperd branches per element.
    """
    m = rot
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 * (squared component) for w, x, y, z
    tr = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = tr.argmax(-1, keepdim=True)
    s = torch.sqrt(torch.clamp(tr.gather(-1, best), min=1e-12)) * 2  # = 4 * |component|
    r21, r12 = m[..., 2, 1], m[..., 1, 2]
    r02, r20 = m[..., 0, 2], m[..., 2, 0]
    r10, r01 = m[..., 1, 0], m[..., 0, 1]
    s = s.squeeze(-1)
    cand = torch.stack(
        [
            torch.stack([s / 4, (r21 - r12) / s, (r02 - r20) / s, (r10 - r01) / s], -1),
            torch.stack([(r21 - r12) / s, s / 4, (r01 + r10) / s, (r02 + r20) / s], -1),
            torch.stack([(r02 - r20) / s, (r01 + r10) / s, s / 4, (r12 + r21) / s], -1),
            torch.stack([(r10 - r01) / s, (r02 + r20) / s, (r12 + r21) / s, s / 4], -1),
        ],
        -2,
    )
    q = cand.gather(-2, best.unsqueeze(-1).expand(*best.shape[:-1], 1, 4)).squeeze(-2)
    q = q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q)
    return q / q.norm(dim=-1, keepdim=True)


def axis_angle_to_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: unit ``axis`` (..., 3) and ``angle`` (...) [rad] -> (..., 3, 3)."""
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2)
    s = torch.sin(angle)[..., None, None]
    c = torch.cos(angle)[..., None, None]
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand(k.shape)
    return eye + s * k + (1 - c) * (k @ k)


def rot6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) continuous representation -> (..., 3, 3) rotation (columns b1, b2, b3)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = b2 / b2.norm(dim=-1, keepdim=True)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


def matrix_to_rot6d(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation -> (..., 6): first two columns, concatenated."""
    return torch.cat([rot[..., :, 0], rot[..., :, 1]], -1)


def make_transform(rot: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotation (..., 3, 3) and translation (..., 3) -> homogeneous (..., 4, 4)."""
    top = torch.cat([rot, pos[..., :, None]], -1)
    bottom = torch.zeros(*rot.shape[:-2], 1, 4, dtype=rot.dtype, device=rot.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], -2)


def rotation_angle_between(rot_a: torch.Tensor, rot_b: torch.Tensor) -> torch.Tensor:
    """Angle [rad] of ``rot_a^T rot_b``, (...,); accurate for small angles (via the Frobenius norm)."""
    diff = (rot_a - rot_b).flatten(-2).norm(dim=-1)  # = 2 sqrt(2) sin(theta / 2)
    return 2 * torch.asin(torch.clamp(diff / (2 * 2**0.5), max=1.0))
