"""ROS-free entry point: an oriented object cloud -> ranked grasp proposals for one hand.

Example::

    from dex_proposal.api import Proposer, default_config
    proposer = Proposer("ur5e_leap")                   # loads the hand once
    result = proposer.propose(points, normals, seed=0) # (N, 3) [m] base frame, (N, 3) unit
    if result.status is Status.OK:
        best = result.proposals[0]                     # .grasp.world_T_root, .grasp.joints, ...

or the one-shot function :func:`propose`. Inputs that cannot give meaningful grasps return a
typed :class:`Status` and no proposals (never an exception, never nonsense):

======================  ===================================================================
status                  when
======================  ===================================================================
``ok``                  proposals returned, best first
``empty_cloud``         no points
``too_few_points``      fewer than ``cfg.min_points``
``nan_points``          a non-finite coordinate or normal
``bad_normals``         normals missing/degenerate (zero length) for more than 10 % of points
``out_of_reach``        the object's nearest point is beyond the arm's reach (+ hand length)
``too_large``           the object's smallest width exceeds the hand's span
``too_small``           the object's largest extent is below ``cfg.min_extent``
``below_table``         the object lies under the table plane
``no_valid_grasp``      the optimiser found no candidate passing the rejection thresholds
======================  ===================================================================

Frames: everything in the cloud's frame, the robot base frame (z up, table top at
``cfg.synthesis.table_z``). Wrist poses are the pose of the hand's root body (Shadow:
``rh_forearm``, LEAP: ``palm``); joint vectors follow the robot YAML's ``hand.joints`` order.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from dex_description.compose import Robot, load_robot

from dex_proposal.errors import ConfigError
from dex_proposal.hand import HandModel, SelfContactChecker
from dex_proposal.pool import ShardedSynthesizer
from dex_proposal.surface import SurfaceConfig, build_surface
from dex_proposal.synthesis import SynthesisConfig, Synthesizer, rank
from dex_proposal.synthesis import default_config as default_synthesis


class Status(str, enum.Enum):
    """Machine-readable outcome of :func:`propose` (the ProposeGrasps service's ``status``)."""

    OK = "ok"
    EMPTY_CLOUD = "empty_cloud"
    TOO_FEW_POINTS = "too_few_points"
    NAN_POINTS = "nan_points"
    BAD_NORMALS = "bad_normals"
    OUT_OF_REACH = "out_of_reach"
    TOO_LARGE = "too_large"
    TOO_SMALL = "too_small"
    BELOW_TABLE = "below_table"
    NO_VALID_GRASP = "no_valid_grasp"


@dataclass(frozen=True)
class ProposalConfig:
    """Everything :func:`propose` needs besides the cloud.

    Attributes:
        synthesis: Optimiser settings (device, batch, energies, stages, table).
        surface: Cloud -> signed-distance grid settings (partial/complete, mirror completion).
        top_k: Proposals returned at most.
        min_points: Fewer points -> ``too_few_points``.
        max_reach: [m] from the arm base (world origin) to the wrist; None = no check (floating hand).
            Default: estimated from the arm model (:func:`arm_reach`).
        check_reach: Whether to apply ``max_reach`` (False for the floating-hand benchmark).
        min_extent: [m] objects smaller than this in every direction -> ``too_small``.
        span_margin: The object's smallest width must be below ``span * span_margin``.
        check_self_contact: Reject candidates whose hand collides with itself in MuJoCo on the straight
            joint path from the open hand to the pre-grasp shape, or at the grasp
            (:class:`dex_proposal.hand.SelfContactChecker`; the optimiser's sphere term misses some
            link pairs).
        processes: Processes the candidates are shared over, this one included
            (:class:`dex_proposal.pool.ShardedSynthesizer`; 1: all in this process). CPU only.
        worker_threads: torch threads of each worker process.
    """

    synthesis: SynthesisConfig = field(default_factory=default_synthesis)
    surface: SurfaceConfig = field(default_factory=SurfaceConfig)
    top_k: int = 20
    min_points: int = 50
    max_reach: float | None = None
    check_reach: bool = True
    min_extent: float = 0.01
    span_margin: float = 1.0
    check_self_contact: bool = True
    processes: int = 1
    worker_threads: int = 1


def default_config() -> ProposalConfig:
    """The proposal settings dexgrasp uses unless told otherwise."""
    return ProposalConfig()


@dataclass
class HandConfiguration:
    """One hand configuration: ``world_T_root`` (4, 4) [m], ``joints`` (n,) [rad] in ``hand.joints``
    order, ``actuated`` (n_act,) [rad] in ``hand.actuated`` order (what a position-controlled hand
    is commanded)."""

    world_T_root: np.ndarray
    joints: np.ndarray
    actuated: np.ndarray


@dataclass
class Proposal:
    """One ranked proposal (pre-grasp, grasp, squeeze) with its energy (lower better) and score in
    (0, 1] (higher better, ``1 / (1 + energy)``), plus diagnostics from the optimiser."""

    pregrasp: HandConfiguration
    grasp: HandConfiguration
    squeeze: HandConfiguration
    energy: float
    score: float
    terms: dict[str, float]
    contact_distance: np.ndarray
    penetration: float


@dataclass
class ProposalResult:
    """``proposals`` best first (empty unless ``status`` is OK), ``status``, a human ``message``,
    ``timings`` [s] per stage, and ``info`` (cloud statistics: partial/complete, extents, ...)."""

    proposals: list[Proposal]
    status: Status
    message: str
    timings: dict[str, float]
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


_REACH_CACHE: dict[str, float] = {}


def arm_reach(robot: Robot, n: int = 4000, seed: int = 0) -> float:
    """Largest distance [m] from the arm base to the flange over random in-limit arm configurations."""
    if robot.cfg.name in _REACH_CACHE:
        return _REACH_CACHE[robot.cfg.name]
    from dex_description.kinematics import RobotKinematics

    kin = RobotKinematics(robot, dtype=torch.float64, with_spheres=False)
    g = torch.Generator().manual_seed(seed)
    lo, hi = kin.lower, kin.upper
    q = lo + (hi - lo) * torch.rand(n, len(lo), generator=g, dtype=torch.float64)
    _, pos = kin.flange(kin.forward(q))
    base = torch.as_tensor(robot.cfg.world_T_base.pos, dtype=torch.float64)
    reach = float((pos - base).norm(dim=-1).max())
    _REACH_CACHE[robot.cfg.name] = reach
    return reach


def _validate(points, normals, cfg: ProposalConfig) -> tuple[Status | None, str, np.ndarray, np.ndarray]:
    try:
        p = np.asarray(points, dtype=np.float64)
        nrm = np.asarray(normals, dtype=np.float64) if normals is not None else None
    except (TypeError, ValueError) as exc:
        return Status.NAN_POINTS, f"cloud is not numeric: {exc}", np.zeros((0, 3)), np.zeros((0, 3))
    if p.size == 0:
        return Status.EMPTY_CLOUD, "the object cloud has no points", p.reshape(0, 3), np.zeros((0, 3))
    if p.ndim != 2 or p.shape[1] != 3:
        return Status.NAN_POINTS, f"points must be (N, 3), got {p.shape}", p, p
    if nrm is None or nrm.shape != p.shape:
        return Status.BAD_NORMALS, f"normals must be (N, 3) like the points, got {None if nrm is None else nrm.shape}", p, p
    if len(p) < cfg.min_points:
        return Status.TOO_FEW_POINTS, f"{len(p)} points < min_points {cfg.min_points}", p, nrm
    bad = ~np.isfinite(p).all(1) | ~np.isfinite(nrm).all(1)
    if bad.any():
        return Status.NAN_POINTS, f"{int(bad.sum())} of {len(p)} points/normals are not finite", p, nrm
    length = np.linalg.norm(nrm, axis=1)
    degenerate = length < 0.5
    if degenerate.mean() > 0.1:
        return Status.BAD_NORMALS, f"{int(degenerate.sum())} of {len(p)} normals are degenerate (|n| < 0.5)", p, nrm
    keep = ~degenerate
    return None, "", p[keep], nrm[keep] / length[keep, None]


class Proposer:
    """Loads a hand once and answers :meth:`propose` calls (what the ROS node wraps).

    Args:
        robot: Robot name or :class:`Robot`.
        cfg: Settings (:func:`default_config`).
    """

    def __init__(self, robot: Robot | str, cfg: ProposalConfig | None = None):
        self.cfg = cfg or default_config()
        self.robot = load_robot(robot, check=False) if isinstance(robot, str) else robot
        syn = self.cfg.synthesis.validated()
        self.hand = HandModel(self.robot, syn.device, syn.torch_dtype)
        self.synthesizer = Synthesizer(self.hand, syn)
        if self.cfg.processes < 1:
            raise ConfigError("processes", f"must be >= 1, got {self.cfg.processes}")
        self.sharded: ShardedSynthesizer | None = None
        if self.cfg.processes > 1 and syn.device == "cpu":
            self.sharded = ShardedSynthesizer(self.synthesizer, self.robot.cfg.path, self.cfg.processes,
                                              self.cfg.worker_threads)
        self.span = self.hand.span()
        self.reach = self.cfg.max_reach if self.cfg.max_reach is not None else arm_reach(self.robot)
        # root -> farthest fingertip distance at the open pose: how far beyond the flange the hand reaches
        fk = self.hand.kin.forward(self.hand.joints(self.hand.named_u["open"][None]), None)
        self.hand_length = float(fk.contact_points[0].norm(dim=-1).max().cpu())
        self._self_contact: SelfContactChecker | None = None  # built on first use (copies the hand model)

    def _reject_self_contacts(self, cands) -> None:
        """Mark candidates invalid (in place) whose hand is in self-contact in MuJoCo on the way from the
        open hand to the pre-grasp shape (the planner's pre-shape: a straight joint-space path; the
        simulated hand got stuck on such paths with its little-finger knuckle in the palm) or at
        the grasp."""
        if self._self_contact is None:
            self._self_contact = SelfContactChecker(self.robot)
        split = self.hand.kin._split.detach().cpu().double().numpy()
        pre, grasp = cands.pregrasp_u.numpy() @ split.T, cands.grasp_u.numpy() @ split.T
        open_q = np.asarray(self.robot.cfg.hand.named_poses.get("open", np.zeros(pre.shape[1])), float)
        checks = (("pre-shape from the open hand", self._self_contact.path(open_q, pre)),
                  ("grasp", self._self_contact(grasp)))
        for name, hits in checks:
            for i, hit in enumerate(hits):
                if hit and "self-contact" not in cands.reasons[i]:
                    why = f"self-contact at the {name} ({hit})"
                    cands.reasons[i] = f"{cands.reasons[i]}; {why}" if cands.reasons[i] else why
                    cands.valid[i] = False

    def close(self) -> None:
        """Stop the worker processes, if any (the proposer still works: they start again on use)."""
        if self.sharded is not None:
            self.sharded.close()

    def warm_up(self, seed: int = 0, progress=None) -> ProposalResult:
        """Propose once for a synthetic 3.5 cm ball (nothing kept), so that the first real request does not
        pay for one-time set-up: the first synthesis of a process ran ~0.9 s longer than the next
        ones (LEAP, 32 candidates: 2.80 -> 1.93 s), e.g. building the MuJoCo self-contact model and
        the first calls of every kernel. The ball stands on the table (``synthesis.table_z``, or 0)
        0.45 m in front of the arm base (+y, where the simulated table is). Returns its result
        (status ``ok`` when the whole pipeline ran); ``progress`` as in :meth:`propose`."""
        rng = np.random.default_rng(seed)
        normals = rng.normal(size=(800, 3))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        radius = 0.035
        table = self.cfg.synthesis.table_z or 0.0
        center = np.asarray(self.robot.cfg.world_T_base.pos, float) + np.array([0.0, 0.45, 0.0])
        center[2] = table + radius
        return self.propose(center + radius * normals, normals, seed=seed, progress=progress)

    def propose(self, points, normals, seed: int = 0, top_k: int | None = None, progress=None) -> ProposalResult:
        """Proposals for one object cloud (see module doc). ``points``/``normals`` (N, 3)."""
        cfg = self.cfg
        syn = cfg.synthesis
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        status, msg, p, nrm = _validate(points, normals, cfg)
        if status is not None:
            return ProposalResult([], status, msg, {"validate": time.perf_counter() - t0})
        info: dict = {"n_points": int(len(p))}
        lo, hi = p.min(0), p.max(0)
        ext = hi - lo
        info["extent"] = ext.tolist()
        if syn.table_z is not None and hi[2] < syn.table_z:
            return ProposalResult([], Status.BELOW_TABLE, f"object top z={hi[2]:.3f} m is below the table z={syn.table_z}",
                                  {"validate": time.perf_counter() - t0}, info)
        if ext.max() < cfg.min_extent:
            return ProposalResult([], Status.TOO_SMALL, f"object extent {ext.max() * 1000:.1f} mm < {cfg.min_extent * 1000:.0f} mm",
                                  {"validate": time.perf_counter() - t0}, info)
        if cfg.check_reach:
            base = np.asarray(self.robot.cfg.world_T_base.pos)
            nearest = float(np.linalg.norm(p - base, axis=1).min())
            info["nearest_distance"] = nearest
            if nearest > self.reach + self.hand_length:
                return ProposalResult([], Status.OUT_OF_REACH,
                                      f"nearest object point {nearest:.2f} m from the arm base > reach {self.reach:.2f} m "
                                      f"+ hand {self.hand_length:.2f} m", {"validate": time.perf_counter() - t0}, info)
        timings["validate"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        surf = build_surface(p, nrm, cfg.surface, syn.table_z, syn.device, syn.torch_dtype)
        timings["surface"] = time.perf_counter() - t1
        info.update({"partial": surf.partial, "completed": surf.completed, "radius": surf.radius, **surf.info})
        width = _min_width(surf.points.cpu().numpy())
        info["min_width"] = width
        info["hand_span"] = self.span
        if width > self.span * cfg.span_margin:
            return ProposalResult([], Status.TOO_LARGE, f"object's smallest width {width * 100:.1f} cm > hand span "
                                  f"{self.span * 100:.1f} cm", timings, info)
        cands = (self.sharded or self.synthesizer).run(surf, seed=seed, progress=progress)
        timings.update({f"opt_{k}": v for k, v in cands.timings.items()})
        if cfg.check_self_contact:
            t2 = time.perf_counter()
            self._reject_self_contacts(cands)
            timings["self_contact"] = time.perf_counter() - t2
        order = rank(cands, top_k or cfg.top_k)
        if cfg.check_reach:
            wrist = cands.pregrasp_T[:, :3, 3].numpy() - np.asarray(self.robot.cfg.world_T_base.pos)
            order = np.array([i for i in order if np.linalg.norm(wrist[i]) <= self.reach], dtype=int)
        info["n_candidates"] = cands.n_initial
        info["n_refined"] = int(len(cands.valid))  # after the stages' pruning
        info["n_valid"] = int(cands.valid.sum())
        info["rejections"] = _count(cands.reasons)
        timings["total"] = time.perf_counter() - t0
        if len(order) == 0:
            return ProposalResult([], Status.NO_VALID_GRASP, f"none of {_refined(cands)} candidates passed: "
                                  f"{info['rejections']}", timings, info)
        split = self.hand.kin._split.detach().cpu().double()

        def conf(T, u) -> HandConfiguration:
            u = u.double()
            return HandConfiguration(T.numpy().copy(), (u @ split.T).numpy(), u.numpy().copy())

        out = []
        for i in order:
            e = float(cands.energy[i])
            out.append(Proposal(conf(cands.pregrasp_T[i], cands.pregrasp_u[i]), conf(cands.grasp_T[i], cands.grasp_u[i]),
                                conf(cands.grasp_T[i], cands.squeeze_u[i]), e, 1.0 / (1.0 + max(e, 0.0)),
                                {k: float(v[i]) for k, v in cands.terms.items()},
                                cands.contact_distance[i].numpy(), float(cands.penetration[i])))
        return ProposalResult(out, Status.OK, f"{len(out)} proposals from {_refined(cands)} candidates", timings, info)


def _refined(cands) -> str:
    """``"32"`` or, after pruning, ``"16 (of 32)"``."""
    n = len(cands.valid)
    return f"{n}" if n == cands.n_initial else f"{n} (of {cands.n_initial})"


def skeleton(hand: HandModel, conf: HandConfiguration) -> tuple[np.ndarray, np.ndarray]:
    """``(pads (m, 3), segments (k, 2, 3))`` [m] of a hand configuration: pad centres and
    parent -> child link-origin segments (for markers and pictures)."""
    with torch.no_grad():
        u = torch.as_tensor(conf.actuated, dtype=hand.dtype, device=hand.device)[None]
        T = torch.as_tensor(conf.world_T_root, dtype=hand.dtype, device=hand.device)[None]
        geo = hand.forward(u, T)
        pos = geo.fk.links.pos[0].cpu().double().numpy()
        pads = geo.pads[0].cpu().double().numpy()
    parent = hand.kin.tree.parent
    segs = [np.stack([pos[parent[i]], pos[i]]) for i in range(len(parent)) if parent[i] >= 0]
    # distal link origin -> pad centre, so the skeleton reaches the fingertips
    for f, idx in enumerate(hand.pad_index):
        body = int(hand.kin.contacts.body_index[idx])
        segs.append(np.stack([pos[body], pads[f]]))
    return pads, np.array(segs).reshape(-1, 2, 3)


def _count(reasons: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reasons:
        for part in filter(None, (x.strip() for x in r.split(";"))):
            key = part.split(" ")[0] + (" " + part.split(" ")[1] if part.startswith(("contact", "table")) else "")
            out[key] = out.get(key, 0) + 1
    return out


def _min_width(points: np.ndarray, n_dirs: int = 64) -> float:
    """Smallest width [m] of the point set over horizontal-ish and all PCA directions."""
    c = points - points.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    dirs = [vt[i] for i in range(3)]
    phi = np.linspace(0, np.pi, n_dirs, endpoint=False)
    dirs += [np.array([np.cos(a), np.sin(a), 0.0]) for a in phi]
    return float(min(np.ptp(c @ d) for d in dirs))


def propose(points, normals, robot: Robot | str, cfg: ProposalConfig | None = None, seed: int = 0) -> ProposalResult:
    """One-shot :meth:`Proposer.propose` (loads the hand each call; keep a :class:`Proposer` to reuse)."""
    return Proposer(robot, cfg).propose(points, normals, seed)


def with_device(cfg: ProposalConfig, device: str, n_candidates: int | None = None) -> ProposalConfig:
    """Copy of ``cfg`` on another device (and batch size)."""
    syn = replace(cfg.synthesis, device=device, n_candidates=n_candidates or cfg.synthesis.n_candidates)
    return replace(cfg, synthesis=syn)
