"""Upper level of BODex: gradient descent on wrist pose + hand actuators, in batched torch.

Variables per candidate: wrist translation ``t`` (3) [m], wrist rotation as the continuous 6-D
representation ``r6`` (6), actuated hand values ``u`` (n_act) [rad] (see :mod:`dex_proposal.hand`
for why actuated rather than joint values). ``world_T_root = (rot6d_to_matrix(r6), t)``.

Energies (lengths in units of ``L0 = 1 cm`` so that the terms are O(1); ``delta`` is the stage's
distance margin, 1 cm for the pre-grasp, 0 for the grasp):

* ``qp``: the BODex grasp energy ``sum_j Q_j / beta^2`` (:func:`dex_proposal.qp.grasp_energy`; 0 when
  all six directions are resisted, 6 when none is) with the fingertip
  centres projected onto the surface, ``p_i = c_i - sdf(c_i) n(c_i)``, and inward normals
  ``-n(c_i)``, torques about the object centre divided by the object radius;
* ``dist``: ``sum_i ((sdf(c_i) - delta) / L0)^2`` (contact distance), ``c_i`` = the pad centre in the
  coarse stage and, in the fine stages, the nearest part of finger ``i``'s fingertip collision
  surface (soft minimum over its surface samples), like BODex's fine stage with meshes;
* ``align``: ``sum_i (1 + nu_i . n(c_i))`` (pad normals ``nu_i`` against the surface normal);
* ``approach`` (zero-margin stages only): ``sum_i |(c_i - c_i^pre)_tangential / L0|^2``, the fingertips
  close from the pre-grasp along the surface normal, so that the squeeze (which continues that
  motion) pushes into the object rather than along it;
* ``pen``: hand-object penetration ``phi(x) = relu(x / L0) + relu(x / L0)^2`` summed over
  - coarse stage: collision spheres, ``x = r_eff + delta - sdf(centre)`` (fingertip spheres shrunk by
    their fit protrusion so that the pads can touch, others by half of it);
  - fine stages: collision-surface samples, ``x = delta + skin - sdf(sample)``, plus the non-fingertip
    spheres shrunk by their full protrusion;
* ``table``: ``phi(table_z + clearance - (z_s - r_s))`` over spheres (the plane ``z = table_z``);
* ``self``: ``phi(r_a + r_b - s_ab - |c_a - c_b|)`` over sphere pairs of non-adjacent links (full radii:
  conservative; ``s_ab`` is the overlap of pairs that already overlap at the open or pre-shape pose,
  + 1 mm, else 0: neighbouring fingers may touch as at rest, not more);
* joint limits: projection of ``u`` onto the actuated limits after every step (exact, no weight).

Stages (BODex's coarse-to-fine with pre-grasp): ``coarse`` (spheres, delta = 1 cm), ``fine``
(surface samples, delta = 1 cm) -> **pre-grasp**; ``grasp`` (surface samples, delta = 0, wrist
frozen by default so the hand only closes its fingers) -> **grasp**; **squeeze** at the grasp wrist
pose: where the hand's robot YAML sets ``hand.synthesis.squeeze_force`` [N] (> 0), the force-aware
squeeze of :mod:`dex_proposal.squeeze` (the servo targets that press the grasp's contacts with
balanced forces), else BODex's ``clamp(u_grasp + s (u_grasp - u_pregrasp))`` (BODex: ``s = 1``; per
hand, ``hand.synthesis.squeeze_scale``). The YAML can also set a stage's iterations,
``hand.synthesis.stage_iters``; see :class:`SynthesisConfig`. Adam with a per-stage cosine decay. Only the
half of the candidates with the lowest energy at the end of the coarse stage go on to the fine
stages (``StageConfig.keep``; measured on the 20 end-to-end LEAP scenes: 95 % of the final top-3
came from that half, 19 of 20 top-1s).

Initialisation: approach directions ``a`` (palm normal) drawn uniformly on the sphere cap that
excludes approaches from below (``a_z <= sin(max_elevation)``; all directions without a table),
the hand's grasp centre (midpoint of thumb pad and finger pads at the pre-shape) placed
``max(h(a) - aperture / 2, 0) + d0`` behind the object's centre along ``-a`` (``h`` = support
distance of the cloud, ``d0`` random), random lateral offset and roll about ``a``, hand at its pre-shape plus
noise; wrist poses whose root lies under the table are resampled.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from dex_description.rotations import make_transform, matrix_to_rot6d, rot6d_to_matrix

from dex_proposal.errors import ConfigError
from dex_proposal.hand import HandModel
from dex_proposal.qp import PyramidQP, QPConfig, QPState, force_directions, grasp_energy
from dex_proposal.squeeze import ForceSqueezeConfig, force_squeeze
from dex_proposal.surface import ObjectSurface

L0 = 0.01  # [m] length unit of the energies


@dataclass(frozen=True)
class StageConfig:
    """One optimisation stage. ``kind``: ``coarse`` (spheres) or ``fine`` (surface samples);
    ``margin`` [m]; ``iters``; ``lr_scale`` on every learning rate; ``wrist_lr_scale`` extra scale
    on the wrist's; ``keep``: fraction of the candidates (lowest energy at the stage's end) that
    go on to the next stage (1 = all)."""

    name: str
    kind: str
    margin: float
    iters: int
    lr_scale: float = 1.0
    wrist_lr_scale: float = 1.0
    keep: float = 1.0


def default_stages() -> tuple[StageConfig, ...]:
    return (
        StageConfig("coarse", "coarse", 0.01, 200, keep=0.5),
        StageConfig("fine", "fine", 0.01, 60, 0.3),
        StageConfig("grasp", "fine", 0.0, 60, 0.3, 0.0),
    )


@dataclass(frozen=True)
class Weights:
    """Energy weights (see module doc)."""

    qp: float = 10.0
    dist: float = 10.0
    align: float = 0.1
    pen: float = 10.0
    table: float = 10.0
    self_: float = 5.0
    approach: float = 0.0


@dataclass(frozen=True)
class InitConfig:
    """Initialisation. ``max_elevation`` [deg]: the highest approach-from-below angle allowed with a
    table (0 = horizontal); ``distance`` [m] range of the palm centre beyond the object's support;
    ``lateral`` fraction of the object's radius for the random lateral offset; ``joint_noise`` [rad]
    std on the pre-shape; ``root_clearance`` [m] the root must be above the table by this."""

    max_elevation: float = 10.0
    distance: tuple[float, float] = (0.0, 0.03)
    lateral: float = 0.4
    joint_noise: float = 0.1
    root_clearance: float = 0.02
    pose: str = "pre_shape"


@dataclass(frozen=True)
class SynthesisConfig:
    """Grasp synthesis settings, MuJoCo-Playground style: ``default_config()`` then ``replace``.

    Attributes:
        n_candidates: Candidates optimised in parallel.
        stages: The stages, or None (the default): :func:`default_stages` with the hand's
            ``hand.synthesis.stage_iters`` from its robot YAML. Stages given here are used as given.
        iter_scale: Scale on every stage's iterations (after the hand's settings; at least 1 each).
        stage_iters: Stage name -> iterations, set last (after ``iter_scale``).
        weights, init, qp: See their classes. ``qp.mu`` is deliberately below the
            simulator's friction (0.6): a grasp that holds with little friction relies on opposing
            normals, which survives squeezing and model error. ``qp.iters``: ADMM iterations per
            upper-level step, warm-started from the previous step (5; 15 before 2026-12). With
            the coarse-stage pruning, synthesis on 8 LEAP clouds went 3.64 -> 2.81 s; the e2e
            benchmark (seeds 1000-1019, 1 s verify hold) lifted 17, 16, 15 of 20 with LEAP in three
            runs against 17, 17, 17 before, within its run-to-run noise but perhaps a small cost.
        thumb_min, fingers_min: Lower bounds on the thumb's and the other fingers' summed normal
            force in the QP (the thumb must oppose the fingers). ``qp.beta`` is small next to what
            friction can carry (``mu * gamma``), so a force-closure grasp reaches zero energy.
        table_z: Table plane height [m] in the cloud frame, or None (floating object).
        table_clearance: [m] hand spheres must stay this far above the table.
        lr: Adam step sizes (translation [m], rot6d [-], actuated [rad]).
        qp_iters_first: ADMM iterations of the first (cold) solve.
        max_penetration: [m] a result whose surface samples penetrate deeper is rejected.
        max_contact_distance: [m] a result whose worst pad is farther from the surface is rejected.
        max_table_penetration: [m] a result whose spheres go below the table by more is rejected.
        pregrasp_table_clearance, pregrasp_max_lift: [m] a pre-grasp whose collision spheres come
            closer to the table than the clearance is raised by the difference, by at most the lift.
        squeeze_scale: hand name -> ``s`` in ``squeeze = grasp + s (grasp - pregrasp)``, overriding the
            hand's ``hand.synthesis.squeeze_scale`` in its robot YAML (BODex: 1, i.e.
            ``2 grasp - pregrasp``, the YAML default). History of the YAML values: in MuJoCo on a 30 g cylinder,
            24 grasps each: Shadow SSR 50/88/75 % for s = 0.3/0.6/1.0, LEAP 94/69/31 % (LEAP's
            servos push a light object out of a fingertip grasp when squeezed a full pre-grasp
            margin further). On the table with gravity and the held-out objects (30-300 g), the
            end-to-end benchmark (LEAP, 20 episodes, seeds 1000-1019) lifted 11/13/12 for
            s = 0.3/0.6/1.0 (heavy mugs and bottles slip at 0.3): LEAP uses 0.6. Shadow (same
            seeds) lifted 8/20 at 0.6 and 10/20 at 1.0 (every 0.6 success kept; the two objects
            that slipped out during the hold at 0.6 stayed). With the 2026-12 synthesis settings,
            Shadow lifted 14/20 (seeds 1000-1019) and 15/20 (seeds 1020-1039) at 1.5 against
            11/20 and 11/20 at 1.0 (its failures at 1.0 were mostly objects that did not move at
            all with the fingers blocked on them: too little grip): Shadow uses 1.5.
        squeeze_force: hand name (or ``"*"``: every hand) -> [N], overriding the hand's
            ``hand.synthesis.squeeze_force``. When > 0 the squeeze is the force-aware one of
            :mod:`dex_proposal.squeeze` (balanced contact forces whose normal components sum to
            this), else the joint-space one above. Both robot YAMLs use 6 N (floating-hand test,
            10 objects, 30 g, the same grasps: Shadow 30 -> 85 %, LEAP 69 -> 90 % held).
        force_squeeze: Settings of the force-aware squeeze other than its force.
        softmin_temperature: [m] of the fine stages' fingertip distance (weights of the fingertip's
            surface samples, ``softmax(-sdf / T)``: the contact point is their weighted mean).
        pen_skin: [m] the fine stages keep the hand's surface samples this far outside the estimated
            surface (the penetration term's ``skin``; the contact distance still aims at 0, so the pads
            settle a little outside and the squeeze closes the gap). It absorbs the grid's smoothing
            and the spacing of the samples, between which a convex object's edge can reach into the
            hand. Floating-hand test, complete meshes (10 objects, top 8 of 32, 30 g): penetration in
            MuJoCo Shadow 1.67 / 1.13 / 0.84 mm and LEAP 1.48 / 0.52 / 0.21 mm for 0 / 1 / 2 mm, SSR
            84.9 / 89.2 / 87.5 % and 90.0 / 92.4 / 91.2 %; partial clouds within their noise (Shadow
            50.0 / 49.2 / 52.5 %, LEAP 51.5 / 46.4 / 48.5 %). 2 mm.
        device, dtype: Where to compute.
    """

    n_candidates: int = 128
    stages: tuple[StageConfig, ...] | None = None
    iter_scale: float = 1.0
    stage_iters: dict = field(default_factory=dict)
    weights: Weights = field(default_factory=Weights)
    init: InitConfig = field(default_factory=InitConfig)
    qp: QPConfig = field(default_factory=lambda: QPConfig(mu=0.2, beta=0.2, k_lower=0.2, iters=5))
    thumb_min: float = 0.5
    fingers_min: float = 0.4
    table_z: float | None = 0.0
    table_clearance: float = 0.003
    lr: tuple[float, float, float] = (0.002, 0.02, 0.03)
    qp_iters_first: int = 100
    max_penetration: float = 0.003
    max_contact_distance: float = 0.01
    max_table_penetration: float = 0.002
    pregrasp_table_clearance: float = 0.003
    pregrasp_max_lift: float = 0.03
    softmin_temperature: float = 0.002
    pen_skin: float = 0.002
    squeeze_scale: dict = field(default_factory=dict)
    squeeze_force: dict = field(default_factory=dict)
    force_squeeze: ForceSqueezeConfig = field(default_factory=ForceSqueezeConfig)
    device: str = "cpu"
    dtype: str = "float32"

    def validated(self) -> "SynthesisConfig":
        if self.n_candidates < 1:
            raise ConfigError("n_candidates", f"must be >= 1, got {self.n_candidates}")
        if self.stages is not None and not self.stages:
            raise ConfigError("stages", "need at least one stage")
        if not self.iter_scale > 0:
            raise ConfigError("iter_scale", f"must be > 0, got {self.iter_scale}")
        for i, s in enumerate(self.stages or ()):
            if s.kind not in ("coarse", "fine"):
                raise ConfigError(f"stages[{i}].kind", f"must be coarse or fine, got {s.kind!r}")
            if s.iters < 0 or s.margin < 0:
                raise ConfigError(f"stages[{i}]", "iters and margin must be >= 0")
            if not 0 < s.keep <= 1:
                raise ConfigError(f"stages[{i}].keep", f"must be in (0, 1], got {s.keep}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError("dtype", f"float32 or float64, got {self.dtype!r}")
        self.qp.validated()
        return self

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.dtype == "float32" else torch.float64


def scaled_stages(stages: tuple[StageConfig, ...], scale: float = 1.0,
                  iters: dict[str, int] | None = None) -> tuple[StageConfig, ...]:
    """Stages with every stage's iterations scaled by ``scale`` (at least 1 unless 1), then the stages named
    in ``iters`` (stage name -> iterations) set to exactly that count.

    Raises:
        ConfigError: ``scale`` <= 0, an unknown stage name or a negative count.
    """
    if not scale > 0:
        raise ConfigError("iter_scale", f"must be > 0, got {scale}")
    iters = dict(iters or {})
    names = [s.name for s in stages]
    for k, v in iters.items():
        if k not in names:
            raise ConfigError("stage_iters", f"no stage {k!r} (stages: {', '.join(names)})")
        if int(v) < 0:
            raise ConfigError("stage_iters", f"{k}: iterations must be >= 0, got {v}")
    def count(s: StageConfig) -> int:
        if s.name in iters:
            return int(iters[s.name])
        return s.iters if scale == 1 else max(1, int(round(s.iters * scale)))

    return tuple(replace(s, iters=count(s)) for s in stages)


def parse_stage_iters(text: str | list[str] | None) -> dict[str, int]:
    """``"coarse=120,fine=40"`` (or a list of ``name=N`` items) -> ``{"coarse": 120, "fine": 40}``.

    Raises:
        ConfigError: an item that is not ``name=integer``.
    """
    if not text:
        return {}
    items = text.split(",") if isinstance(text, str) else [x for t in text for x in t.split(",")]
    out = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().lstrip("-").isdigit():
            raise ConfigError("stage_iters", f"expected name=iterations, got {item!r}")
        out[name.strip()] = int(value)
    return out


def default_config() -> SynthesisConfig:
    """The synthesis settings dexgrasp uses unless told otherwise."""
    return SynthesisConfig()


@dataclass
class Candidates:
    """Optimised candidates, all on CPU, float64, in the cloud frame.

    Attributes:
        pregrasp_T, grasp_T: (B, 4, 4) wrist (root) poses.
        pregrasp_u, grasp_u, squeeze_u: (B, n_act) actuated values [rad].
        energy: (B,) total grasp-stage energy; terms: name -> (B,) per-term energies.
        contact_distance: (B, m) signed pad distances to the surface at the grasp [m].
        penetration: (B,) deepest surface-sample penetration at the grasp [m] (>= 0).
        table_penetration: (B,) [m]; self_penetration: (B,) [m] (sphere estimate).
        valid: (B,) bool, passes the rejection thresholds; reasons: per candidate, '' if valid.
        timings: stage -> seconds.
        n_initial: Candidates initialised (``B`` is fewer where a stage kept only a fraction).
    """

    pregrasp_T: torch.Tensor
    grasp_T: torch.Tensor
    pregrasp_u: torch.Tensor
    grasp_u: torch.Tensor
    squeeze_u: torch.Tensor
    energy: torch.Tensor
    terms: dict[str, torch.Tensor]
    contact_distance: torch.Tensor
    penetration: torch.Tensor
    table_penetration: torch.Tensor
    self_penetration: torch.Tensor
    valid: torch.Tensor
    reasons: list[str]
    timings: dict[str, float]
    n_initial: int = 0


def _phi(x: torch.Tensor) -> torch.Tensor:
    y = torch.relu(x / L0)
    return y + y * y


def self_penetration_energy(centers: torch.Tensor, reach: torch.Tensor, active_set: bool = True) -> torch.Tensor:
    """``sum_ab phi(reach_ab - |c_a - c_b|)`` per batch row (B,), the ``self`` term.

    Args:
        centers: (B, S, 3) sphere centres [m].
        reach: (S, S) closest allowed distance of each checked pair [m], negative for pairs not checked
            (:attr:`HandModel.self_pair_reach_checked`).
        active_set: Find the pairs that penetrate without autograd (all ``S x S`` distances, a Gram
            matrix centred for float32) and differentiate only through those (gathered, exact
            differences). ``phi`` and its gradient are zero elsewhere, so the value and gradient are
            those of the dense form (``False``: every pair through autograd), and a step is ~11 %
            cheaper (forward + backward, 32 candidates, 1 thread, interleaved: coarse LEAP 10.7 ->
            9.4 ms, Shadow 9.6 -> 8.5 ms), since few of the 2400 (LEAP) / 2963 (Shadow) checked
            pairs penetrate at any time.
    """
    batch = centers.shape[0]
    if not active_set:
        c0 = centers - centers.mean(1, keepdim=True).detach()
        sq = c0.square().sum(-1)
        d2 = sq[:, :, None] + sq[:, None] - 2 * c0 @ c0.transpose(1, 2)
        return _phi(reach - d2.clamp_min(1e-12).sqrt()).sum((-1, -2))
    with torch.no_grad():
        c0 = centers - centers.mean(1, keepdim=True)
        sq = c0.square().sum(-1)
        d2 = sq[:, :, None] + sq[:, None] - 2 * c0 @ c0.transpose(1, 2)
        # 0.1 mm below contact: far above the Gram form's float32 rounding, so no penetrating pair is missed
        b, i, j = torch.nonzero(reach + 1e-4 > d2.clamp_min(1e-12).sqrt(), as_tuple=True)
    dist = (centers[b, i] - centers[b, j]).square().sum(-1).clamp_min(1e-12).sqrt()
    return torch.zeros(batch, dtype=centers.dtype, device=centers.device).index_add(0, b, _phi(reach[i, j] - dist))


def _frame_from(a: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) with columns a, f, a x f (a, f unit and orthogonal)."""
    return torch.stack([a, f, torch.cross(a, f, dim=-1)], -1)


class Synthesizer:
    """Batched BODex-style synthesis for one hand.

    Args:
        hand: :class:`HandModel` (moved to the config's device/dtype).
        cfg: Settings.
    """

    def __init__(self, hand: HandModel, cfg: SynthesisConfig | None = None):
        self.cfg = (cfg or default_config()).validated()
        self.hand = hand.to(self.cfg.device, self.cfg.torch_dtype)
        thumb = [i for i, f in enumerate(hand.fingers) if "th" in f.lower()]
        others = [i for i in range(hand.n_fingers) if i not in thumb]
        groups = []
        if thumb and others:
            groups = [(thumb, self.cfg.thumb_min), (others, self.cfg.fingers_min)]
        self.solver = PyramidQP(hand.n_fingers, self.cfg.qp, groups)
        self.stages = self.resolve_stages(self.cfg, hand)
        s = self.cfg.squeeze_scale.get(hand.cfg.name, hand.cfg.synthesis.squeeze_scale)
        if not s > 0:
            raise ConfigError("squeeze_scale", f"{hand.cfg.name}: must be > 0, got {s}")
        self.squeeze_scale = float(s)
        f = self.cfg.squeeze_force.get(hand.cfg.name, self.cfg.squeeze_force.get("*", hand.cfg.synthesis.squeeze_force))
        if not f >= 0:
            raise ConfigError("squeeze_force", f"{hand.cfg.name}: must be >= 0 [N], got {f}")
        self.squeeze_force = float(f)
        self.groups = groups

    @staticmethod
    def resolve_stages(cfg: SynthesisConfig, hand: HandModel) -> tuple[StageConfig, ...]:
        """The stages this hand runs: ``cfg.stages`` as given, or the defaults with the hand's
        ``hand.synthesis.stage_iters``; then ``cfg.iter_scale`` and ``cfg.stage_iters``."""
        if cfg.stages is None:
            names = [s.name for s in default_stages()]
            own = hand.cfg.synthesis.stage_iters
            bad = [k for k in own if k not in names]
            if bad:
                raise ConfigError("hand.synthesis.stage_iters",
                                  f"{hand.cfg.name} names stage {bad[0]!r}; stages are {', '.join(names)}")
            stages = scaled_stages(default_stages(), 1.0, own)
        else:
            stages = cfg.stages
        return scaled_stages(stages, cfg.iter_scale, cfg.stage_iters)

    # ------------------------------------------------------------------ initialisation
    def initial_poses(self, obj: ObjectSurface, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(world_T_root (n, 4, 4), u (n, n_act))`` around the object (see module doc)."""
        cfg, hand = self.cfg, self.hand
        dt = torch.float64
        pts = obj.points.detach().cpu().to(dt)
        center = obj.center.detach().cpu().to(dt)
        table = cfg.table_z
        out_T, out_u = [], []
        have, rounds = 0, 0
        gc_root = hand.grasp_center.cpu().to(dt)
        palm_n = hand.palm_normal.cpu().to(dt)
        palm_f = hand.palm_finger.cpu().to(dt)
        root_R_palm = _frame_from(palm_n[None], palm_f[None])[0]
        half_aperture = 0.5 * hand.aperture
        while have < n and rounds < 50:
            m = 2 * (n - have) + 8
            rounds += 1
            a = torch.randn(m, 3, generator=gen, dtype=dt)
            a = a / a.norm(dim=-1, keepdim=True)
            if table is not None:  # approach direction points from hand to object; a_z > 0 = from below
                lim = math.sin(math.radians(cfg.init.max_elevation))
                # uniform on the cap a_z <= lim: z uniform in [-1, lim] (Archimedes), azimuth uniform
                z = -1 + (lim + 1) * torch.rand(m, generator=gen, dtype=dt)
                phi = 2 * math.pi * torch.rand(m, generator=gen, dtype=dt)
                r = torch.sqrt((1 - z * z).clamp_min(0))
                a = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)
            support = ((pts[None] - center) @ (-a)[..., None]).squeeze(-1).amax(-1)  # (m,)
            d0 = cfg.init.distance[0] + (cfg.init.distance[1] - cfg.init.distance[0]) * torch.rand(m, generator=gen, dtype=dt)
            helper = torch.where(a[:, 2:3].abs() > 0.9, torch.tensor([1.0, 0, 0], dtype=dt), torch.tensor([0, 0, 1.0], dtype=dt))
            e1 = torch.cross(a, helper, dim=-1)
            e1 = e1 / e1.norm(dim=-1, keepdim=True)
            e2 = torch.cross(a, e1, dim=-1)
            ang = 2 * math.pi * torch.rand(m, generator=gen, dtype=dt)
            f = torch.cos(ang)[:, None] * e1 + torch.sin(ang)[:, None] * e2
            lat = cfg.init.lateral * obj.radius * (torch.rand(m, 2, generator=gen, dtype=dt) * 2 - 1)
            # grasp centre (thumb-finger midpoint): at the object's centre when the object fits between
            # thumb and fingers, else half an aperture inside the near surface; backed off by d0
            depth = (support - half_aperture).clamp_min(0) + d0
            gc_w = center - a * depth[:, None] + lat[:, :1] * e1 + lat[:, 1:] * e2
            world_R_palm = _frame_from(a, f)
            world_R_root = world_R_palm @ root_R_palm.T
            root_p = gc_w - (world_R_root @ gc_root[:, None]).squeeze(-1)
            palm_w = gc_w
            ok = torch.ones(m, dtype=torch.bool)
            if table is not None:
                ok &= root_p[:, 2] > table + cfg.init.root_clearance
                ok &= palm_w[:, 2] > table
            idx = torch.nonzero(ok).squeeze(-1)[: n - have]
            out_T.append(make_transform(world_R_root[idx], root_p[idx]))
            have += len(idx)
        if have < n:  # could not satisfy the table constraint (object far below?): keep what we have, pad by repeats
            if have == 0:
                raise ConfigError("init", "no initial wrist pose above the table; is the cloud below table_z?")
            T = torch.cat(out_T)
            out_T = [T[torch.arange(n) % have]]
        T = torch.cat(out_T)[:n]
        base = hand.named_u[cfg.init.pose].cpu().to(dt)
        u = base[None] + cfg.init.joint_noise * torch.randn(n, len(base), generator=gen, dtype=dt)
        u = torch.minimum(torch.maximum(u, hand.u_lower.cpu().to(dt)), hand.u_upper.cpu().to(dt))
        return T, u

    # ------------------------------------------------------------------ energies
    def energies(self, obj: ObjectSurface, t: torch.Tensor, r6: torch.Tensor, u: torch.Tensor, kind: str,
                 margin: float, qp_state: QPState | None, qp_iters: int | None = None,
                 ref_tips: torch.Tensor | None = None) -> tuple[dict, QPState, dict]:
        """Energy terms (B,) for variables ``t, r6, u``; returns ``(terms, qp_state, extras)``."""
        hand, cfg = self.hand, self.cfg
        T = make_transform(rot6d_to_matrix(r6), t)
        geo = hand.forward(u, T)
        batch = t.shape[0]
        terms: dict[str, torch.Tensor] = {}
        if kind == "coarse":  # the pad centres (BODex's coarse stage: one point per fingertip)
            tips = geo.pads
            sdf_pad, n_pad = obj.query(tips)
        else:  # fine: the nearest part of each fingertip's collision surface (soft minimum)
            samples = geo.fk.links.transform(hand.finger_sample_body, hand.finger_sample_local)
            samples = samples.reshape(batch, *hand.finger_samples.shape, 3)  # (B, m, K, 3)
            sdf_surf = obj.sdf(geo.surface)
            s_all = sdf_surf[:, hand.finger_samples]
            w = torch.softmax(-s_all / cfg.softmin_temperature, dim=-1)
            tips = (w[..., None] * samples).sum(-2)
            sdf_pad, n_pad = obj.query(tips)
        terms["dist"] = ((sdf_pad - margin) / L0).square().sum(-1)
        terms["align"] = (1 + (geo.pad_normals * n_pad).sum(-1)).sum(-1)
        if ref_tips is not None:  # pre-grasp -> grasp: fingertips should move along the surface normal
            delta = tips - ref_tips
            tang = delta - (delta * n_pad.detach()).sum(-1, keepdim=True) * n_pad.detach()
            terms["approach"] = (tang / L0).square().sum((-1, -2))
        else:
            terms["approach"] = torch.zeros_like(terms["align"])
        contact = tips - sdf_pad[..., None] * n_pad
        e_qp, _, sol = grasp_energy(contact, -n_pad, obj.center, max(obj.radius, 0.01), self.cfg.qp,
                                    qp_state, self.solver, force_directions(t.dtype, t.device), qp_iters)
        terms["qp"] = e_qp / self.cfg.qp.beta ** 2  # 0 = every direction resisted, 6 = none
        centers = geo.fk.sphere_centers
        radii = hand.sphere_radii
        prot = hand.sphere_protrusion
        sdf_sph = obj.sdf(centers)
        if kind == "coarse":
            r_eff = radii - torch.where(hand.sphere_is_distal, prot, 0.5 * prot)
            terms["pen"] = _phi(r_eff + margin - sdf_sph).sum(-1)
        else:
            r_eff = radii - prot
            non_distal = (~hand.sphere_is_distal).to(t.dtype)
            terms["pen"] = _phi(margin + cfg.pen_skin - sdf_surf).sum(-1) + (_phi(r_eff + margin - sdf_sph) * non_distal).sum(-1)
        if cfg.table_z is not None:
            terms["table"] = _phi(cfg.table_z + cfg.table_clearance - (centers[..., 2] - radii)).sum(-1)
        else:
            terms["table"] = torch.zeros(batch, dtype=t.dtype, device=t.device)
        if len(hand.self_pairs):
            terms["self"] = self_penetration_energy(centers, hand.self_pair_reach_checked)
        else:
            terms["self"] = torch.zeros(batch, dtype=t.dtype, device=t.device)
        extras = {"geo": geo, "sdf_pad": sdf_pad, "sdf_sph": sdf_sph, "tips": tips, "n_pad": n_pad}
        return terms, sol.state.detach(), extras

    def total(self, terms: dict) -> torch.Tensor:
        w = self.cfg.weights
        return (w.qp * terms["qp"] + w.approach * terms["approach"] + w.dist * terms["dist"] + w.align * terms["align"] + w.pen * terms["pen"]
                + w.table * terms["table"] + w.self_ * terms["self"])

    # ------------------------------------------------------------------ main loop
    def run(self, obj: ObjectSurface, seed: int = 0, n: int | None = None, progress=None) -> Candidates:
        """Optimise ``n`` (default ``cfg.n_candidates``) candidates for one object surface.

        ``progress``: optional callable ``(stage, iteration, mean energy)``.
        """
        cfg, hand = self.cfg, self.hand
        dev, dt = torch.device(cfg.device), cfg.torch_dtype
        n = n or cfg.n_candidates
        n_initial = n
        obj = obj.to(dev, dt)
        gen = torch.Generator().manual_seed(int(seed))
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        T0, u0 = self.initial_poses(obj, n, gen)
        timings["init"] = time.perf_counter() - t0
        t = T0[:, :3, 3].to(dev, dt).clone().requires_grad_(True)
        r6 = matrix_to_rot6d(T0[:, :3, :3]).to(dev, dt).clone().requires_grad_(True)
        u = u0.to(dev, dt).clone().requires_grad_(True)
        qp_state = None
        snapshots = {}
        ref_tips = None
        for stage in self.stages:
            if stage.margin == 0 and snapshots:  # the pre-grasp fingertips this stage closes from
                with torch.no_grad():
                    _, _, ex0 = self.energies(obj, t, r6, u, stage.kind, stage.margin, qp_state)
                    ref_tips = ex0["tips"].detach()
            ts = time.perf_counter()
            lr_t, lr_r, lr_u = (x * stage.lr_scale for x in cfg.lr)
            opt = torch.optim.Adam([
                {"params": [t], "lr": lr_t * stage.wrist_lr_scale},
                {"params": [r6], "lr": lr_r * stage.wrist_lr_scale},
                {"params": [u], "lr": lr_u},
            ])
            base_lrs = [g["lr"] for g in opt.param_groups]
            for it in range(stage.iters):
                frac = it / max(stage.iters - 1, 1)
                for g, lr0 in zip(opt.param_groups, base_lrs):
                    g["lr"] = lr0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
                terms, qp_state, _ = self.energies(obj, t, r6, u, stage.kind, stage.margin, qp_state,
                                                   cfg.qp_iters_first if qp_state is None else None,
                                                   ref_tips if stage.margin == 0 else None)
                loss = self.total(terms)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                for p in (t, r6, u):
                    if p.grad is not None:
                        p.grad.nan_to_num_(0.0, 0.0, 0.0)
                if stage.wrist_lr_scale == 0:
                    t.grad = None
                    r6.grad = None
                opt.step()
                with torch.no_grad():
                    u.copy_(hand.clamp(u))
                    r6.copy_(matrix_to_rot6d(rot6d_to_matrix(r6)))  # keep the 6-D vectors orthonormal
                if progress is not None and (it % 50 == 0 or it == stage.iters - 1):
                    progress(stage.name, it, float(loss.detach().mean()))
            snapshots[stage.name] = (t.detach().clone(), r6.detach().clone(), u.detach().clone())
            if stage.keep < 1 and n > 1:  # the candidates with the lowest energy at the stage's end go on
                with torch.no_grad():  # (the QP's warm start stays that of the last step)
                    terms, _, _ = self.energies(obj, t, r6, u, stage.kind, stage.margin, qp_state,
                                                cfg.qp_iters_first if qp_state is None else None,
                                                ref_tips if stage.margin == 0 else None)
                    energy = self.total(terms)
                n = max(1, math.ceil(stage.keep * n))
                keep = torch.argsort(energy.nan_to_num(math.inf), stable=True)[:n]
                if ref_tips is not None:
                    ref_tips = ref_tips[keep]
                snapshots = {k: tuple(x[keep] for x in v) for k, v in snapshots.items()}
                t, r6, u = (x.clone().requires_grad_(True) for x in snapshots[stage.name])
                qp_state = None if qp_state is None else qp_state.select(keep)
            timings[stage.name] = time.perf_counter() - ts
        # pre-grasp = end of the last stage with a margin; grasp = end of the last stage
        pre_name = [s.name for s in self.stages if s.margin > 0]
        pre_name = pre_name[-1] if pre_name else self.stages[-1].name
        tp, rp, up = snapshots[pre_name]
        tg, rg, ug = snapshots[self.stages[-1].name]
        ts = time.perf_counter()
        with torch.no_grad():
            terms, _, ex = self.energies(obj, tg, rg, ug, "fine", 0.0, qp_state, cfg.qp_iters_first)
            energy = self.total(terms)
            geo = ex["geo"]
            sdf_surf = obj.sdf(geo.surface)
            penetration = (-sdf_surf).clamp_min(0).amax(-1)
            centers, radii = geo.fk.sphere_centers, hand.sphere_radii
            if cfg.table_z is not None:
                table_pen = (cfg.table_z - (centers[..., 2] - radii + hand.sphere_protrusion)).clamp_min(0).amax(-1)
                # the pre-grasp is the arm planner's goal and must clear the table with the exact
                # geometry: where its (conservative, whole) spheres come lower than the clearance,
                # the pre-grasp wrist goes up by the difference (at most pregrasp_max_lift); the
                # approach then ends with a short descent. Measured: for a 2.7 cm torus every
                # proposal's open pre-grasp had its fingertips on the table (planner:
                # collision_at_goal) while the grasp itself was above it.
                geo_pre = hand.forward(up, make_transform(rot6d_to_matrix(rp), tp))
                bottom = (geo_pre.fk.sphere_centers[..., 2] - radii).amin(-1)
                rise = (cfg.table_z + cfg.pregrasp_table_clearance - bottom).clamp(0.0, cfg.pregrasp_max_lift)
                tp = tp.clone()
                tp[:, 2] += rise
            else:
                table_pen = torch.zeros_like(penetration)
            pairs = hand.self_pairs
            if len(pairs):
                r_s = radii - hand.sphere_protrusion
                pen_self = (r_s[pairs[:, 0]] + r_s[pairs[:, 1]] - hand.self_pair_slack
                            - (centers[:, pairs[:, 0]] - centers[:, pairs[:, 1]]).norm(dim=-1)).clamp_min(0).amax(-1)
            else:
                pen_self = torch.zeros_like(penetration)
            cdist = ex["sdf_pad"]
            if self.squeeze_force > 0:
                contact = ex["tips"] - cdist[..., None] * ex["n_pad"]
                squeeze, _ = force_squeeze(hand, make_transform(rot6d_to_matrix(rg), tg), ug, contact, -ex["n_pad"],
                                           cdist, obj.center, max(obj.radius, 0.01),
                                           replace(cfg.force_squeeze, force=self.squeeze_force), self.groups)
            else:
                squeeze = hand.clamp(ug + self.squeeze_scale * (ug - up))
        timings["evaluate"] = time.perf_counter() - ts
        finite = torch.isfinite(energy) & torch.isfinite(tg).all(-1) & torch.isfinite(ug).all(-1)
        reasons = []
        for i in range(n):
            r = []
            if not bool(finite[i]):
                r.append("non-finite")
            if float(penetration[i]) > cfg.max_penetration:
                r.append(f"penetration {1000 * float(penetration[i]):.1f} mm")
            if float(cdist[i].abs().max()) > cfg.max_contact_distance:
                r.append(f"contact distance {1000 * float(cdist[i].abs().max()):.1f} mm")
            if float(table_pen[i]) > cfg.max_table_penetration:
                r.append(f"table penetration {1000 * float(table_pen[i]):.1f} mm")
            reasons.append("; ".join(r))
        valid = torch.tensor([not r for r in reasons])
        cpu = lambda x: x.detach().to("cpu", torch.float64)  # noqa: E731
        return Candidates(
            pregrasp_T=cpu(make_transform(rot6d_to_matrix(rp), tp)),
            grasp_T=cpu(make_transform(rot6d_to_matrix(rg), tg)),
            pregrasp_u=cpu(up), grasp_u=cpu(ug), squeeze_u=cpu(squeeze),
            energy=cpu(energy), terms={k: cpu(v) for k, v in terms.items()},
            contact_distance=cpu(cdist), penetration=cpu(penetration), table_penetration=cpu(table_pen),
            self_penetration=cpu(pen_self), valid=valid, reasons=reasons, timings=timings, n_initial=n_initial,
        )


def rank(c: Candidates, top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` valid candidates, lowest energy first (stable: ties by index)."""
    e = c.energy.numpy().copy()
    e[~c.valid.numpy()] = np.inf
    order = np.argsort(e, kind="stable")
    order = order[np.isfinite(e[order])]
    return order[:top_k]
