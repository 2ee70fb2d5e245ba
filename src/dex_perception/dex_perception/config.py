"""Perception configuration: ``default_config()`` + overrides (MuJoCo-Playground style).

All lengths in metres, angles in degrees where the name says ``_deg``. Frames: the workspace box
and the reference point are in the robot base frame (``base_link`` = our world: z up, table top at
``z = 0``, workspace along ``+y``).

Override with ``dataclasses.replace`` or from a nested mapping / YAML file::

    cfg = default_config()
    cfg = replace(cfg, max_points=1024)
    cfg = config_from_dict({"workspace": {"min": [-0.4, 0.3, -0.02]}, "voxel_size": 0.004})
    cfg = load_config("my_perception.yaml")
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from dex_perception.errors import ConfigError


@dataclass(frozen=True)
class WorkspaceBox:
    """Axis-aligned box in the robot base frame [m]; points outside are discarded.

    The default covers the table in front of the robot (``+y``) from 0.22 m (clear of the arm's
    base) to 1.05 m, 0.5 m to either side, from 3 cm below the table top to 25 cm above it (below
    the hand at the home pose, so the robot is not segmented as an object).
    """

    min: tuple[float, float, float] = (-0.5, 0.22, -0.03)
    max: tuple[float, float, float] = (0.5, 1.05, 0.25)

    def raised(self, height: float) -> "WorkspaceBox":
        """The same box with its top ``height`` [m] higher (to look for a lifted object)."""
        return WorkspaceBox(tuple(self.min), (self.max[0], self.max[1], self.max[2] + float(height)))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: which of ``points`` (N, 3) [m] lie inside (bounds inclusive)."""
        lo, hi = np.asarray(self.min, points.dtype), np.asarray(self.max, points.dtype)
        inside = (points[:, 0] >= lo[0]) & (points[:, 0] <= hi[0])
        for k in (1, 2):
            inside &= (points[:, k] >= lo[k]) & (points[:, k] <= hi[k])
        return inside

    def center(self) -> np.ndarray:
        return 0.5 * (np.asarray(self.min, float) + np.asarray(self.max, float))


@dataclass(frozen=True)
class PerceptionConfig:
    """Every tunable of :class:`dex_perception.pipeline.Perception`.

    Depth:
        min_depth, max_depth: Valid depth range along the optical axis [m]; outside -> invalid.
    Workspace / table:
        workspace: Crop box in the base frame.
        plane_distance: RANSAC inlier distance to the table plane [m].
        plane_iterations: RANSAC iterations (open3d ``segment_plane``).
        plane_sample_points: RANSAC runs on at most this many random workspace points; the plane is
            then refined by least squares on all inliers.
        max_table_tilt_deg: The table normal must be within this angle of base ``+z``.
        min_table_points: A plane with fewer inliers (among all workspace points) is no table.
        object_min_height: Points closer than this [m] to the table plane belong to the table.
        adapt_to_noise: Measure the depth noise on the table (robust std of its points about the
            plane) and raise the inlier distance to 2.5, the object height threshold to 3 and the
            normal radius to 5 noise standard deviations when those exceed the values above.
    Clustering:
        cluster_voxel: Object points are averaged into voxels of this edge [m] before DBSCAN.
        cluster_eps: DBSCAN neighbourhood radius [m] (on voxel centres).
        cluster_min_voxels: DBSCAN ``min_points``.
        min_cluster_points: Clusters with fewer depth pixels are dropped (noise, specks).
    Target selection:
        default_prompt: Prompt used for ``""`` / ``"default"`` (see :mod:`dex_perception.prompt`).
        reference_point: ``"nearest"`` picks the cluster whose centroid is nearest (in x-y) to this
            base-frame point [m] (default: the arm's base, i.e. nearest to the robot).
        point_max_distance: ``"point X Y Z"`` selects the cluster with the closest point, if that is
            within this distance [m]; otherwise :class:`~dex_perception.errors.BadPromptError`.
        pixel_search_radius: ``"pixel U V"`` selects the cluster at that pixel, or the nearest
            cluster pixel within this radius [px].
    Object cloud:
        outlier_neighbors, outlier_std_ratio: open3d statistical outlier removal.
        voxel_size: Voxel down-sampling edge [m] of the object cloud.
        max_points: After voxel down-sampling, farthest-point sampling caps the cloud at this count.
        normal_radius, normal_max_nn: open3d hybrid normal-estimation neighbourhood.
        normal_orientation: ``"camera"`` (towards the camera centre; for a single view this is
            outward on every visible surface) or ``"centroid"`` (away from the cloud's centroid).
        scene_voxel: Voxel edge [m] of the scene cloud (all workspace points) for display.
    Fusion:
        fusion_frames: Frames averaged by :class:`dex_perception.fusion.DepthFusion` (1 = off).
        fusion_min_valid: A fused pixel needs a valid depth in at least this fraction of frames.
    Segment Anything (optional):
        sam_checkpoint: Path of a SAM checkpoint (``.pth``); ``""`` disables SAM.
        sam_model_type: ``vit_b``, ``vit_l`` or ``vit_h`` (segment-anything's model registry).
        sam_device: torch device for SAM.
    Misc:
        seed: Seed of the random sub-sampling and open3d's RANSAC (deterministic results).
    """

    min_depth: float = 0.15
    max_depth: float = 2.5
    workspace: WorkspaceBox = field(default_factory=WorkspaceBox)
    plane_distance: float = 0.005
    plane_iterations: int = 200
    plane_sample_points: int = 4000
    max_table_tilt_deg: float = 15.0
    min_table_points: int = 300
    object_min_height: float = 0.005
    adapt_to_noise: bool = True
    cluster_voxel: float = 0.005
    cluster_eps: float = 0.0125
    cluster_min_voxels: int = 3
    min_cluster_points: int = 60
    default_prompt: str = "nearest"
    reference_point: tuple[float, float, float] = (0.0, 0.0, 0.0)
    point_max_distance: float = 0.05
    pixel_search_radius: float = 12.0
    outlier_neighbors: int = 16
    outlier_std_ratio: float = 2.5
    voxel_size: float = 0.003
    max_points: int = 2048
    normal_radius: float = 0.01
    normal_max_nn: int = 20
    normal_orientation: str = "camera"
    scene_voxel: float = 0.01
    fusion_frames: int = 1
    fusion_min_valid: float = 0.5
    sam_checkpoint: str = ""
    sam_model_type: str = "vit_b"
    sam_device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        validate_config(self)


_POSITIVE = ("max_depth", "plane_distance", "cluster_voxel", "cluster_eps", "voxel_size",
             "normal_radius", "scene_voxel", "point_max_distance")
_POSITIVE_INT = ("plane_iterations", "plane_sample_points", "cluster_min_voxels", "min_cluster_points",
                 "outlier_neighbors", "max_points", "normal_max_nn", "fusion_frames")
_NON_NEGATIVE = ("min_depth", "object_min_height", "pixel_search_radius", "outlier_std_ratio")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_config(cfg: PerceptionConfig) -> None:
    """Raise :class:`ConfigError` naming the first invalid field."""
    for name in _POSITIVE:
        v = getattr(cfg, name)
        if not _finite(v) or v <= 0:
            raise ConfigError(name, f"must be a finite number > 0, got {v!r}")
    for name in _POSITIVE_INT:
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(name, f"must be an integer >= 1, got {v!r}")
    for name in _NON_NEGATIVE:
        v = getattr(cfg, name)
        if not _finite(v) or v < 0:
            raise ConfigError(name, f"must be a finite number >= 0, got {v!r}")
    if not isinstance(cfg.min_table_points, int) or cfg.min_table_points < 3:
        raise ConfigError("min_table_points", f"must be an integer >= 3, got {cfg.min_table_points!r}")
    if cfg.min_depth >= cfg.max_depth:
        raise ConfigError("min_depth", f"must be < max_depth ({cfg.max_depth}), got {cfg.min_depth}")
    if not _finite(cfg.max_table_tilt_deg) or not 0 < cfg.max_table_tilt_deg < 90:
        raise ConfigError("max_table_tilt_deg", f"must be in (0, 90), got {cfg.max_table_tilt_deg!r}")
    if not _finite(cfg.fusion_min_valid) or not 0 < cfg.fusion_min_valid <= 1:
        raise ConfigError("fusion_min_valid", f"must be in (0, 1], got {cfg.fusion_min_valid!r}")
    if not isinstance(cfg.adapt_to_noise, bool):
        raise ConfigError("adapt_to_noise", f"must be true or false, got {cfg.adapt_to_noise!r}")
    if cfg.normal_orientation not in ("camera", "centroid"):
        raise ConfigError("normal_orientation", f"must be 'camera' or 'centroid', got {cfg.normal_orientation!r}")
    if cfg.sam_model_type not in ("vit_b", "vit_l", "vit_h", "default"):
        raise ConfigError("sam_model_type", f"must be vit_b, vit_l, vit_h or default, got {cfg.sam_model_type!r}")
    for name, vec in (("workspace.min", cfg.workspace.min), ("workspace.max", cfg.workspace.max),
                      ("reference_point", cfg.reference_point)):
        if len(vec) != 3 or not all(_finite(v) for v in vec):
            raise ConfigError(name, f"must be 3 finite numbers, got {vec!r}")
    if any(lo >= hi for lo, hi in zip(cfg.workspace.min, cfg.workspace.max)):
        raise ConfigError("workspace", f"min {cfg.workspace.min} must be < max {cfg.workspace.max} on every axis")
    from dex_perception.errors import BadPromptError
    from dex_perception.prompt import parse_prompt

    try:
        prompt = parse_prompt(cfg.default_prompt)
    except BadPromptError as exc:
        raise ConfigError("default_prompt", str(exc)) from None
    if prompt.kind == "default":
        raise ConfigError("default_prompt", "must name a selection ('nearest', 'largest', 'index N', ...), not 'default'")


def default_config() -> PerceptionConfig:
    """The default configuration (sim tabletop, RealSense-like depth)."""
    return PerceptionConfig()


def config_from_dict(values: Mapping[str, Any], base: PerceptionConfig | None = None) -> PerceptionConfig:
    """``base`` (default: :func:`default_config`) with the fields in ``values`` replaced.

    ``workspace`` may be given as ``{"min": [x, y, z], "max": [x, y, z]}`` (either key optional).
    Unknown keys raise :class:`ConfigError` (typos must not be silently ignored).
    """
    base = base or default_config()
    if not isinstance(values, Mapping):
        raise ConfigError("", f"expected a mapping of field -> value, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(PerceptionConfig)}
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(str(key), f"unknown field; known: {', '.join(sorted(names))}")
        if key == "workspace":
            if isinstance(value, WorkspaceBox):
                updates[key] = value
                continue
            if not isinstance(value, Mapping) or set(value) - {"min", "max"}:
                raise ConfigError("workspace", f"must be a mapping with 'min' and/or 'max', got {value!r}")
            try:
                updates[key] = WorkspaceBox(
                    min=tuple(float(v) for v in value.get("min", base.workspace.min)),
                    max=tuple(float(v) for v in value.get("max", base.workspace.max)),
                )
            except (TypeError, ValueError):
                raise ConfigError("workspace", f"min/max must be 3 numbers each, got {value!r}") from None
        elif key == "reference_point":
            try:
                updates[key] = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(key, f"must be 3 numbers, got {value!r}") from None
        else:
            default = getattr(base, key)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            updates[key] = value
    return dataclasses.replace(base, **updates)


def load_config(path: str | Path, base: PerceptionConfig | None = None) -> PerceptionConfig:
    """Read a YAML mapping of overrides (see :func:`config_from_dict`)."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    try:
        return config_from_dict(values, base)
    except ConfigError as exc:
        raise ConfigError(exc.field, f"{path}: {exc}") from None
