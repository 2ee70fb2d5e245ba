"""The hand as the grasp optimiser sees it: actuated parameters, contacts, spheres, surface samples.

Decision on Shadow's coupled distal joints (``J0 = J1 + J2``): we optimise the **actuated**
values (20 for Shadow, 16 for LEAP) and map them to the 24/16 joints with
:meth:`HandKinematics.joints_from_actuated` (equal split). Reasons: (1) a position-controlled hand
commands actuators, and in free space the tendon splits ``J0`` equally, so every pre-grasp / grasp
pose we output is exactly the pose the hand reaches when commanded (a 24-joint optimum with
``J1 != J2`` is not reachable before contact); (2) squeeze = 2 grasp - pre-grasp is linear, so it is
the same in either space and stays on the commandable manifold; (3) no penalty weight to tune and
four fewer variables. The cost is a slightly smaller configuration space for the distal phalanges,
which only matters for contacts on the middle phalanx (BODex uses fingertip contacts only).

Actuated limits are the set of ``u`` whose split stays inside every joint's range:
``u_k in [max_j lo_j / s_jk, min_j hi_j / s_jk]``.

Shapes: ``B`` batch, ``m`` fingers (one contact each: the pad centre, the first contact point of
each finger in the robot YAML), ``S`` collision spheres, ``P`` surface samples.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import torch

from dex_description.compose import Robot, load_robot
from dex_description.kinematics import HandFK, HandKinematics
from dex_description.spheres import collision_geoms, read_sphere_file, sample_surface

from dex_proposal.errors import ConfigError


@dataclass
class HandPose:
    """A batch of floating-hand poses: ``world_T_root`` (B, 4, 4) and actuated values ``u`` (B, n_act)."""

    world_T_root: torch.Tensor
    u: torch.Tensor


@dataclass
class HandGeometry:
    """One FK pass: the hand FK plus pad contacts and surface samples, world frame.

    Attributes:
        fk: :class:`HandFK` (links, all contact points, spheres).
        pads: (B, m, 3) pad centres [m]; pad_normals: (B, m, 3) outward pad normals.
        surface: (B, P, 3) collision-surface samples [m].
    """

    fk: HandFK
    pads: torch.Tensor
    pad_normals: torch.Tensor
    surface: torch.Tensor


def _farthest_point(points: np.ndarray, n: int) -> np.ndarray:
    if len(points) <= n:
        return np.arange(len(points))
    chosen = [0]
    d = np.linalg.norm(points - points[0], axis=1)
    for _ in range(n - 1):
        i = int(d.argmax())
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(points - points[i], axis=1))
    return np.array(chosen)


class HandModel:
    """Grasp-optimiser view of one robot's hand.

    Args:
        robot: Robot or robot name.
        device, dtype: Where to compute.
        surface_spacing: Target spacing of the collision-surface samples [m] (fingertips use half).
        max_surface_per_link: Cap of samples per link.
    """

    def __init__(self, robot: Robot | str, device="cpu", dtype=torch.float32, surface_spacing: float = 0.01,
                 max_surface_per_link: int = 60, seed: int = 0):
        self.robot = load_robot(robot, check=False) if isinstance(robot, str) else robot
        self.cfg = self.robot.cfg.hand
        self.kin = HandKinematics(self.robot, device, dtype)
        self.device, self.dtype = torch.device(device), dtype
        names = self.kin.tree.body_names
        self.body_names = names
        model = self.robot.hand_model
        # fingers: first contact point of each finger = pad centre
        groups = self.kin.contacts.group
        self.fingers: tuple[str, ...] = tuple(dict.fromkeys(groups))
        self.pad_index = [groups.index(f) for f in self.fingers]
        self.distal_bodies = tuple(cp.body for cp in self.cfg.contact_points)
        # actuated limits
        a = self.cfg.actuation_matrix()  # (n_act, n)
        split = a.T / np.maximum(a.sum(axis=1), 1.0)[None, :]  # (n, n_act)
        lo_j, hi_j = self.kin._lower_np, self.kin._upper_np
        u_lo, u_hi = [], []
        for k in range(split.shape[1]):
            rows = np.nonzero(split[:, k] > 0)[0]
            u_lo.append(max(lo_j[r] / split[r, k] for r in rows))
            u_hi.append(min(hi_j[r] / split[r, k] for r in rows))
        self._u_lo, self._u_hi = np.array(u_lo), np.array(u_hi)
        if np.any(self._u_lo > self._u_hi):
            raise ConfigError("hand.actuated", "an actuator's equal split cannot satisfy its joints' ranges")
        self.actuated_names = tuple(self.cfg.actuated_names)
        # spheres: tolerance = the fit's max protrusion of the body (fingertips may touch), body ids
        sf = read_sphere_file(self.cfg.spheres) if self.cfg.spheres else None
        sphere_bodies = self.kin.spheres.group
        prot = []
        for b in sphere_bodies:
            cov = sf.coverage.get(b, {}) if sf else {}
            prot.append(float(cov.get("max_protrusion", 0.0) or 0.0))
        self._sphere_protrusion = np.array(prot)
        self._sphere_is_distal = np.array([b in self.distal_bodies for b in sphere_bodies])
        self._sphere_body = np.array([names.index(b) for b in sphere_bodies])
        self._self_pairs = self._make_self_pairs(model)
        self._surface_np = self._make_surface(model, surface_spacing, max_surface_per_link, seed)
        self._build()

    # ------------------------------------------------------------------------------------------
    def _make_self_pairs(self, model) -> np.ndarray:
        """Sphere pairs checked for self-penetration: spheres of different, non-adjacent links. Pairs
        that already overlap at the open or pre-shape pose (neighbouring fingers side by side: the
        spheres are conservative) are checked against that overlap instead: they may not overlap
        more than at rest (+1 mm), so that fingers cannot be pushed into each other (measured: a
        Shadow pre-grasp with the little and ring fingers spread into each other, which MuJoCo
        refused, when such pairs were not checked at all). Sets ``self._self_pair_slack`` (P,) [m]."""
        parent = self.kin.tree.parent
        sb = self._sphere_body
        s = len(sb)
        kin = HandKinematics(self.robot, "cpu", torch.float64)
        overlap = np.full((s, s), -np.inf)  # r_a + r_b - distance at rest [m] (> 0: overlapping)
        for pose in ("open", "pre_shape"):
            q = torch.as_tensor(self.cfg.named_poses[pose], dtype=torch.float64)[None]
            fk = kin.forward(q)
            c = fk.sphere_centers[0].numpy()
            r = fk.sphere_radii.numpy()
            d = np.linalg.norm(c[:, None] - c[None], axis=-1)
            overlap = np.maximum(overlap, (r[:, None] + r[None]) - d)
        pairs, slack = [], []
        for i in range(s):
            for j in range(i + 1, s):
                bi, bj = sb[i], sb[j]
                if bi == bj or parent[bi] == bj or parent[bj] == bi:
                    continue
                pairs.append((i, j))
                # touching at rest (within 1 mm): may come no closer than at rest - 1 mm
                slack.append(float(overlap[i, j]) + 1e-3 if overlap[i, j] > -1e-3 else 0.0)
        self._self_pair_slack = np.array(slack, dtype=np.float64)
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def _make_surface(self, model, spacing: float, cap: int, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        idx, pts, distal = [], [], []
        for bi, body in enumerate(self.body_names):
            geoms = collision_geoms(model, body)
            if not geoms:
                continue
            is_distal = body in self.distal_bodies
            sp = spacing / 2 if is_distal else spacing
            area = sum(g.area for g in geoms)
            n = int(np.clip(area / (sp * sp), 6, cap * (2 if is_distal else 1)))
            dense = sample_surface(geoms, 8 * n, rng)
            chosen = dense[_farthest_point(dense, n)]
            idx += [bi] * len(chosen)
            pts.append(chosen)
            distal += [is_distal] * len(chosen)
        return {"body": np.array(idx), "local": np.concatenate(pts), "distal": np.array(distal)}

    def _build(self) -> None:
        dev, dt = self.device, self.dtype
        t = lambda a, d=dt: torch.as_tensor(np.asarray(a), dtype=d, device=dev)  # noqa: E731
        self.u_lower, self.u_upper = t(self._u_lo), t(self._u_hi)
        self.pad_index_t = torch.as_tensor(self.pad_index, dtype=torch.long, device=dev)
        self.sphere_radii = self.kin.spheres.radii
        self.sphere_protrusion = t(self._sphere_protrusion)
        self.sphere_is_distal = torch.as_tensor(self._sphere_is_distal, device=dev)
        self.self_pairs = torch.as_tensor(self._self_pairs, dtype=torch.long, device=dev)
        n_s = len(self._sphere_body)
        mask = np.zeros((n_s, n_s), dtype=bool)
        if len(self._self_pairs):
            mask[self._self_pairs[:, 0], self._self_pairs[:, 1]] = True
        self.self_pair_mask = torch.as_tensor(mask, device=dev)  # (S, S) upper triangle: pairs checked
        radii = self.kin.spheres.radii
        self.self_pair_slack = t(self._self_pair_slack)  # (P,) [m] overlap allowed (as at rest)
        reach = np.zeros((n_s, n_s))
        if len(self._self_pairs):
            reach[self._self_pairs[:, 0], self._self_pairs[:, 1]] = -self._self_pair_slack
        self.self_pair_reach = radii[:, None] + radii[None] + t(reach)  # (S, S) [m] closest allowed distance
        # the same with -1 m where a pair is not checked (no distance is below it): ``reach - distance``
        # is then the penetration of the checked pairs and negative elsewhere, without a mask
        self.self_pair_reach_checked = torch.where(self.self_pair_mask, self.self_pair_reach, -1.0)
        self.surface_body = torch.as_tensor(self._surface_np["body"], dtype=torch.long, device=dev)
        self.surface_local = t(self._surface_np["local"])
        self.surface_is_distal = torch.as_tensor(self._surface_np["distal"], device=dev)
        # per finger: indices of its distal link's surface samples, padded by repetition -> (m, K)
        body_of = self._surface_np["body"]
        lists = []
        for f, pi in zip(self.fingers, self.pad_index):
            b = int(self.kin.contacts.body_index[pi])
            lists.append(np.nonzero(body_of == b)[0])
        k = max(len(x) for x in lists)
        self.finger_samples = torch.as_tensor(np.stack([np.resize(x, k) for x in lists]), dtype=torch.long, device=dev)
        flat = self.finger_samples.reshape(-1)
        self.finger_sample_body = self.surface_body[flat]  # (m K,) the same samples as attached points
        self.finger_sample_local = self.surface_local[flat]
        n, f, gc, aperture = self._palm_frame()
        self.palm_normal, self.palm_finger, self.grasp_center = t(n), t(f), t(gc)
        self.aperture = aperture
        self.named_u = {k: t(self.cfg.actuated_from_joints(np.asarray(v))) for k, v in self.cfg.named_poses.items()}

    def _palm_frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Palm normal and finger direction (root frame), the grasp centre (root frame: midpoint of
        the thumb pad and the mean other pad at the pre-shape) and the thumb-finger aperture [m].

        The YAML ``hand.palm`` frame is used when it agrees with the kinematics (its normal within
        60 deg of the mean pad normal of the non-thumb fingers at the open pose); otherwise the
        frame is derived from the pads and ``palm_frame_source`` says so (``palm_frame_warning``
        explains), so a wrong YAML cannot silently break the initialisation.
        """
        import torch as _t

        kin = HandKinematics(self.robot, "cpu", _t.float64)
        a = self.cfg.actuation_matrix()
        split = a.T / np.maximum(a.sum(axis=1), 1.0)[None, :]
        out = {}
        for pose in ("open", "pre_shape"):
            q = _t.as_tensor(split @ self.cfg.actuated_from_joints(np.asarray(self.cfg.named_poses[pose])))[None]
            fk = kin.forward(q)
            out[pose] = (fk.contact_points[0, self.pad_index].numpy(), fk.contact_normals[0, self.pad_index].numpy())
        thumb = [i for i, f in enumerate(self.fingers) if "th" in f.lower()]
        others = [i for i in range(len(self.fingers)) if i not in thumb] or list(range(len(self.fingers)))
        pads_o, normals_o = out["open"]
        n_kin = normals_o[others].mean(0)
        n_kin /= np.linalg.norm(n_kin)
        f_kin = pads_o[others].mean(0)
        f_kin = f_kin - (f_kin @ n_kin) * n_kin
        f_kin /= np.linalg.norm(f_kin)
        palm = self.cfg.palm
        n = np.asarray(palm.normal, float)
        n /= np.linalg.norm(n)
        f = np.asarray(palm.finger_direction, float)
        f = f - (f @ n) * n
        f /= np.linalg.norm(f)
        self.palm_frame_source, self.palm_frame_warning = "yaml", ""
        if n @ n_kin < 0.5 or f @ f_kin < 0.5:
            self.palm_frame_source = "kinematics"
            self.palm_frame_warning = (f"hand.palm of {self.cfg.name} (normal {np.round(n, 3).tolist()}, finger_direction "
                                       f"{np.round(f, 3).tolist()}) disagrees with the fingertip pads at the open pose "
                                       f"(normal {np.round(n_kin, 3).tolist()}, fingers {np.round(f_kin, 3).tolist()}); "
                                       "using the pads' frame")
            n, f = n_kin, f_kin
        pads_p, _ = out["pre_shape"]
        if thumb:
            gc = 0.5 * (pads_p[thumb].mean(0) + pads_p[others].mean(0))
            aperture = float(np.linalg.norm(pads_p[thumb].mean(0) - pads_p[others].mean(0)))
        else:
            gc = pads_p.mean(0)
            aperture = float(np.linalg.norm(pads_p - gc, axis=1).max() * 2)
        return n, f, gc, aperture

    def to(self, device=None, dtype=None) -> "HandModel":
        """Move to another device/precision (in place); returns self."""
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        self.kin.to(self.device, self.dtype)
        self._build()
        return self

    # ------------------------------------------------------------------------------------------
    @property
    def n_act(self) -> int:
        return len(self._u_lo)

    @property
    def n_fingers(self) -> int:
        return len(self.fingers)

    def joints(self, u: torch.Tensor) -> torch.Tensor:
        """(B, n_act) actuated -> (B, n) joints (equal split of coupled actuators)."""
        return self.kin.joints_from_actuated(u)

    def clamp(self, u: torch.Tensor) -> torch.Tensor:
        """Project actuated values onto their limits."""
        return torch.minimum(torch.maximum(u, self.u_lower), self.u_upper)

    def forward(self, u: torch.Tensor, world_T_root: torch.Tensor) -> HandGeometry:
        """FK of a batch: ``u`` (B, n_act), ``world_T_root`` (B, 4, 4)."""
        fk = self.kin.forward(self.joints(u), world_T_root)
        pads = fk.contact_points[:, self.pad_index_t]
        pad_normals = fk.contact_normals[:, self.pad_index_t]
        surface = fk.links.transform(self.surface_body, self.surface_local)
        return HandGeometry(fk, pads, pad_normals, surface)

    def span(self, n: int = 2000, seed: int = 0) -> float:
        """Largest distance [m] between the thumb pad and another finger's pad over random in-limit
        configurations: the widest object the hand can pinch."""
        g = torch.Generator().manual_seed(seed)
        lo, hi = self.u_lower.cpu().double(), self.u_upper.cpu().double()
        kin = HandKinematics(self.robot, "cpu", torch.float64)
        u = lo + (hi - lo) * torch.rand(n, len(lo), generator=g, dtype=torch.float64)
        q = u @ torch.as_tensor(self.cfg.actuation_matrix().T / np.maximum(self.cfg.actuation_matrix().sum(1), 1.0)[None, :]).T
        fk = kin.forward(q)
        pads = fk.contact_points[:, self.pad_index]
        thumb = [i for i, f in enumerate(self.fingers) if "th" in f]
        if not thumb:
            d = torch.cdist(pads, pads)
            return float(d.max())
        t = pads[:, thumb[0]]
        return float((pads - t[:, None]).norm(dim=-1).max())


class SelfContactChecker:
    """Exact self-collision of hand configurations, by MuJoCo on the hand's own model (the geometry
    the simulator and the real hand's collision model use), for the final candidates: the sphere
    term of the optimiser is conservative for most pairs but cannot see every pair (a link without
    spheres, e.g. Shadow's little-finger knuckle against the palm when the finger cups).

    Args:
        robot: The robot whose ``hand_model`` is checked (a copy with ``clearance`` of geom margin,
            so that near misses are measured too).
        depth: [m] at a configuration, a pair counts when it penetrates deeper than this.
        clearance: [m] on a path, a pair counts when it comes closer than this (the simulated hand
            does not follow a straight joint path exactly: a knuckle that grazes the palm on the
            nominal path stuck on it).

    A body pair that is already that close at the ``open`` or ``pre_shape`` named pose (neighbouring
    fingers side by side) counts only when it comes 0.5 mm closer than there.
    """

    def __init__(self, robot: Robot, depth: float = 0.0005, clearance: float = 0.001):
        import copy

        import mujoco

        self._mj = mujoco
        self.model = copy.deepcopy(robot.hand_model)
        self.model.geom_margin[:] = np.maximum(self.model.geom_margin, clearance + 0.002)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.depth, self.clearance = float(depth), float(clearance)
        self.joints = tuple(robot.cfg.hand.joints)
        self._adr = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.joints])
        self._resting: dict[tuple[str, str], float] = {}
        for pose in ("open", "pre_shape"):
            if pose in robot.cfg.hand.named_poses:
                for k, v in self.distances(np.asarray(robot.cfg.hand.named_poses[pose], float)).items():
                    self._resting[k] = min(v, self._resting.get(k, np.inf))

    def distances(self, q: np.ndarray) -> dict[tuple[str, str], float]:
        """Body-name pair -> signed distance [m] (< 0: penetration) for every pair of the hand that
        comes within the model's margin, at hand joints ``q`` (n,) [rad]."""
        mj, m, d = self._mj, self.model, self.data
        d.qpos[:] = m.qpos0
        d.qpos[self._adr] = q
        mj.mj_forward(m, d)
        out: dict[tuple[str, str], float] = {}
        for c in d.contact[: d.ncon]:
            a = mj.mj_id2name(m, mj.mjtObj.mjOBJ_BODY, int(m.geom_bodyid[c.geom1])) or "?"
            b = mj.mj_id2name(m, mj.mjtObj.mjOBJ_BODY, int(m.geom_bodyid[c.geom2])) or "?"
            key = (min(a, b), max(a, b))
            out[key] = min(float(c.dist), out.get(key, np.inf))
        return out

    def _hits(self, q: np.ndarray, limit: float) -> str:
        bad = sorted(k for k, v in self.distances(q).items() if v < min(limit, self._resting.get(k, np.inf) - 0.0005))
        return ", ".join(f"{a}-{b}" for a, b in bad[:3])

    def __call__(self, q: np.ndarray) -> list[str]:
        """Per configuration of ``q`` (B, n): '' or the body pairs penetrating deeper than ``depth``."""
        return [self._hits(row, -self.depth) for row in np.atleast_2d(q)]

    def path(self, q_from: np.ndarray, q_to: np.ndarray, steps: int = 8) -> list[str]:
        """For the straight joint-space paths ``q_from (n,) -> q_to (B, n)`` (``steps`` samples each,
        the start excluded): '' or the pairs of the first sample closer than ``clearance``."""
        out = []
        for row in np.atleast_2d(q_to):
            hit = ""
            for s in np.linspace(0.0, 1.0, steps + 1)[1:]:
                hit = self._hits(q_from + s * (row - q_from), self.clearance)
                if hit:
                    break
            out.append(hit)
        return out


def matching(names, patterns) -> list[str]:
    """Names that match any fnmatch pattern."""
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
