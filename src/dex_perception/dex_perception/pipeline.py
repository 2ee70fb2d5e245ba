"""Depth (+ colour) + camera model + extrinsics -> table plane, object clusters, the target object's
cloud with oriented normals, in the robot base frame. ROS-free.

Stages (:meth:`Perception.analyse`, then :meth:`Perception.select`):

1. decode/validate: depth (H, W) [m] must match the camera model (:class:`SizeMismatchError`);
   no valid pixel in ``[min_depth, max_depth]`` -> :class:`EmptyDepthError`.
2. back-project valid pixels (undistorted rays, :mod:`dex_perception.camera`) and transform to the
   base frame with ``base_T_camera``; crop to the workspace box
   (nothing left -> :class:`NothingInWorkspaceError`).
3. table: open3d RANSAC (``segment_plane``) on a random subset of the workspace points, accepted
   only if its normal is within ``max_table_tilt_deg`` of ``+z`` and most remaining points are
   above it (so a large box top is not taken for the table); refined by least squares on every
   inlier (none -> :class:`NoTableError`); the robust spread of the table points about the plane
   measures the depth noise, which (``adapt_to_noise``) raises the inlier distance, the object
   height threshold and the normal radius above their configured minimums.
4. objects: points higher than ``object_min_height`` above the plane, averaged into
   ``cluster_voxel`` voxels (numpy, so the voxel -> pixel map is kept), clustered with open3d
   DBSCAN; clusters with fewer than ``min_cluster_points`` pixels are dropped; sorted largest first
   (none -> :class:`NoObjectError`).
5. target: by prompt (:mod:`dex_perception.prompt`); optionally refined by a Segment Anything mask
   prompted with the cluster's image box or the user's pixel (:mod:`dex_perception.sam`).
6. object cloud: open3d voxel down-sampling, statistical outlier removal, farthest-point sampling
   to ``max_points``, normals (hybrid KD-tree search), oriented towards the camera centre (or away
   from the centroid).

Array conventions: points ``(N, 3)`` float32 [m] in the base frame unless a name says otherwise;
pixel indices are flat ``v * W + u`` into the depth image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dex_perception.calibration import Extrinsics
from dex_perception.camera import CameraModel, backproject, check_sizes, depth_to_metres
from dex_perception.config import PerceptionConfig, WorkspaceBox, default_config
from dex_perception.errors import (
    BadPromptError,
    EmptyDepthError,
    NoObjectError,
    NoTableError,
    NothingInWorkspaceError,
    SamError,
)
from dex_perception.prompt import Prompt, parse_prompt

_o3d = None


def o3d():
    """open3d, imported on first use (~0.7 s)."""
    global _o3d
    if _o3d is None:
        import open3d

        _o3d = open3d
    return _o3d


# Large (N, 3) x (3, 3) products are written out element-wise on purpose: numpy hands ``@`` to a
# multi-threaded BLAS, which on a loaded 2-core machine measured 72 ms for 170k points (0.5 ms
# single-threaded, 1.6 ms element-wise regardless of load).
def _transform(points: np.ndarray, a_T_b: np.ndarray) -> np.ndarray:
    """(N, 3) points in frame b -> frame a (same dtype)."""
    r = a_T_b[:3, :3].astype(points.dtype)
    t = a_T_b[:3, 3].astype(points.dtype)
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    out = np.empty_like(points)
    for i in range(3):
        out[:, i] = x * r[i, 0] + y * r[i, 1] + z * r[i, 2] + t[i]
    return out


def _affine_dot(points: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """(N,) ``points . normal + offset`` in the points' dtype."""
    n = np.asarray(normal, dtype=points.dtype)
    return points[:, 0] * n[0] + points[:, 1] * n[1] + points[:, 2] * n[2] + points.dtype.type(offset)


def _mean_cov(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (3,), covariance (3, 3)) in float64, element-wise."""
    p = points.astype(np.float64)
    mean = p.mean(axis=0)
    d = p - mean
    cov = np.empty((3, 3))
    for i in range(3):
        for j in range(i, 3):
            cov[i, j] = cov[j, i] = float((d[:, i] * d[:, j]).mean())
    return mean, cov


@dataclass
class TablePlane:
    """The table plane in the base frame: ``normal . p + offset = 0``, normal pointing up.

    Attributes:
        normal: (3,) unit normal (``normal[2] > 0``).
        offset: Plane offset [m].
        inliers: Number of workspace points within the inlier distance (estimated from a strided
            subset of the points on large clouds).
        support: (K, 3) a random subset of the inliers projected onto the plane [m].
        noise_std: Robust (MAD) standard deviation [m] of the table points' heights about the plane:
            the depth noise at the table's distance.
    """

    normal: np.ndarray
    offset: float
    inliers: int
    support: np.ndarray
    noise_std: float = 0.0

    def height(self, points: np.ndarray) -> np.ndarray:
        """(N,) signed height [m] of ``points`` above the plane."""
        return _affine_dot(points, self.normal, self.offset)

    def tilt_deg(self) -> float:
        return float(np.degrees(np.arccos(np.clip(self.normal[2], -1.0, 1.0))))

    def polygon(self) -> np.ndarray:
        """(K, 3) convex hull of the table's support on the plane [m], counter-clockwise seen from
        above (x-y hull by qhull; for display)."""
        from scipy.spatial import ConvexHull, QhullError

        if self.support.shape[0] < 3:
            return self.support.copy()
        try:
            hull = ConvexHull(self.support[:, :2])
        except QhullError:  # degenerate (collinear) support
            return self.support[:0].copy()
        return self.support[hull.vertices].copy()


@dataclass
class Cluster:
    """One object candidate.

    Attributes:
        pixels: (M,) flat depth-image pixel indices of its points.
        points: (M, 3) float32 base-frame points [m].
        centroid: (3,) mean point [m].
        bbox_min, bbox_max: (3,) axis-aligned bounds [m].
        pixel_box: (u_min, v_min, u_max, v_max) [px] in the depth image, inclusive.
    """

    pixels: np.ndarray
    points: np.ndarray
    centroid: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    pixel_box: tuple[int, int, int, int]

    @property
    def size(self) -> int:
        return int(self.pixels.size)


@dataclass
class SceneAnalysis:
    """Everything :meth:`Perception.analyse` finds in one frame (prompt-independent).

    Attributes:
        camera: The depth camera model.
        base_T_camera: (4, 4) optical frame in the base frame.
        depth: (H, W) float32 [m], NaN invalid (as processed).
        rgb: (h, w, 3) uint8 colour image or None.
        workspace_points: (N, 3) float32 workspace points [m].
        workspace_pixels: (N,) their pixel indices.
        table: The table plane.
        candidate_points, candidate_pixels: Workspace points above the table (object candidates).
        clusters: Object clusters, largest first.
        timings: Stage -> seconds.
    """

    camera: CameraModel
    base_T_camera: np.ndarray
    depth: np.ndarray
    rgb: np.ndarray | None
    workspace_points: np.ndarray
    workspace_pixels: np.ndarray
    table: TablePlane
    candidate_points: np.ndarray
    candidate_pixels: np.ndarray
    clusters: list[Cluster]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def camera_position(self) -> np.ndarray:
        return self.base_T_camera[:3, 3].copy()

    def label_image(self) -> np.ndarray:
        """(H, W) int32: cluster index per depth pixel, -1 elsewhere."""
        labels = np.full(self.camera.height * self.camera.width, -1, dtype=np.int32)
        for i, c in enumerate(self.clusters):
            labels[c.pixels] = i
        return labels.reshape(self.camera.height, self.camera.width)

    def scene_cloud(self, voxel: float) -> np.ndarray:
        """(S, 3) float32 workspace points voxel-down-sampled for display [m]."""
        if self.workspace_points.size == 0:
            return np.zeros((0, 3), np.float32)
        pcd = o3d().geometry.PointCloud(o3d().utility.Vector3dVector(self.workspace_points.astype(np.float64)))
        return np.asarray(pcd.voxel_down_sample(voxel).points, dtype=np.float32)


@dataclass
class PerceptionResult:
    """The target object and the scene it was found in.

    Attributes:
        analysis: The prompt-independent scene analysis.
        prompt: The parsed prompt actually used (``default`` resolved).
        target: Index of the selected cluster in ``analysis.clusters``.
        points: (P, 3) float32 object cloud [m], base frame, P <= ``max_points``.
        normals: (P, 3) float32 unit normals, oriented (see ``normal_orientation``).
        mask: (H, W) bool depth pixels of the selected object (cluster or SAM mask).
        segmentation: ``"cluster"`` or ``"sam"``.
        notes: Human-readable remarks (e.g. SAM fell back to the cluster).
        timings: Stage -> seconds (analysis stages included).
    """

    analysis: SceneAnalysis
    prompt: Prompt
    target: int
    points: np.ndarray
    normals: np.ndarray
    mask: np.ndarray
    segmentation: str = "cluster"
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_objects(self) -> int:
        return len(self.analysis.clusters)

    @property
    def table(self) -> TablePlane:
        return self.analysis.table

    @property
    def cluster(self) -> Cluster:
        return self.analysis.clusters[self.target]


class _Timer:
    def __init__(self, timings: dict[str, float]):
        self.timings = timings
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.t
        self.t = now


class Perception:
    """The perception core; one instance per camera.

    Args:
        config: Tunables (:func:`dex_perception.config.default_config`).
        extrinsics: Camera pose: an :class:`Extrinsics` or a (4, 4) ``base_T_camera`` array.
        segmenter: Optional :class:`dex_perception.sam.SamSegmenter`; default: built lazily from
            ``config.sam_checkpoint`` when that is set.
    """

    def __init__(self, config: PerceptionConfig | None = None, extrinsics: Extrinsics | np.ndarray | None = None,
                 segmenter=None):
        self.config = config or default_config()
        if extrinsics is None:
            raise ValueError("extrinsics (base_T_camera) are required")
        if isinstance(extrinsics, Extrinsics):
            self.extrinsics = extrinsics
        else:
            mat = np.asarray(extrinsics, dtype=np.float64)
            if mat.shape != (4, 4) or not np.all(np.isfinite(mat)):
                raise ValueError(f"base_T_camera must be a finite (4, 4) array, got shape {mat.shape}")
            self.extrinsics = Extrinsics(mat)
        self._segmenter = segmenter

    @property
    def base_T_camera(self) -> np.ndarray:
        return self.extrinsics.base_T_camera

    def set_extrinsics(self, extrinsics: Extrinsics) -> None:
        """Replace the camera pose (e.g. from TF, per frame)."""
        self.extrinsics = extrinsics

    @property
    def segmenter(self):
        """The SAM segmenter (created on first access if ``config.sam_checkpoint`` is set), or None."""
        if self._segmenter is None and self.config.sam_checkpoint:
            from dex_perception.sam import SamSegmenter

            self._segmenter = SamSegmenter(self.config.sam_checkpoint, self.config.sam_model_type,
                                           self.config.sam_device)
        return self._segmenter

    # ------------------------------------------------------------------------------------------
    def process(self, depth: np.ndarray, camera: CameraModel, rgb: np.ndarray | None = None,
                prompt: str | Prompt = "") -> PerceptionResult:
        """:meth:`analyse` then :meth:`select` (see the module docstring)."""
        return self.select(self.analyse(depth, camera, rgb), prompt)

    def analyse(self, depth: np.ndarray, camera: CameraModel, rgb: np.ndarray | None = None,
                workspace: WorkspaceBox | None = None) -> SceneAnalysis:
        """Table and clusters of one frame.

        Args:
            depth: (H, W) depth: floating point [m] or integer [mm] (ROS 32FC1 / 16UC1 conventions);
                0, NaN and inf are invalid.
            camera: The depth image's camera model.
            rgb: Optional (h, w, 3) uint8 colour image registered to the depth image (same
                aspect ratio; used for pixel prompts and SAM).
            workspace: Crop box for this frame instead of ``config.workspace`` (e.g. raised to
                look for a lifted object).

        Raises:
            SizeMismatchError, ImageError, EmptyDepthError, NothingInWorkspaceError, NoTableError,
            NoObjectError.
        """
        cfg = self.config
        timings: dict[str, float] = {}
        timer = _Timer(timings)
        depth = depth_to_metres(depth)
        if rgb is not None:
            rgb = np.asarray(rgb)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                from dex_perception.errors import ImageError

                raise ImageError(f"colour image must be (h, w, 3) uint8, got {rgb.shape} {rgb.dtype}")
        check_sizes(depth, camera, rgb)
        points_cam, pixels = backproject(depth, camera, cfg.min_depth, cfg.max_depth)
        if points_cam.shape[0] == 0:
            raise EmptyDepthError(f"no valid depth pixel in [{cfg.min_depth}, {cfg.max_depth}] m "
                                  f"({camera.width}x{camera.height} image: all 0, NaN or out of range)")
        points = _transform(points_cam, self.base_T_camera)
        timer.lap("backproject")
        box = cfg.workspace if workspace is None else workspace
        inside = box.contains(points)
        points, pixels = points[inside], pixels[inside]
        if points.shape[0] == 0:
            raise NothingInWorkspaceError(f"none of the {inside.size} valid depth points lies in the workspace box "
                                          f"{box.min}..{box.max} m (base frame); check the "
                                          "camera extrinsics and the workspace config")
        timer.lap("crop")
        table = self._fit_table(points)
        timer.lap("table")
        height = table.height(points)
        min_height = self._min_height(table)
        above = height > min_height
        cand_points, cand_pixels = points[above], pixels[above]
        clusters = self._cluster(cand_points, cand_pixels, camera.width)
        timer.lap("cluster")
        if not clusters:
            raise NoObjectError(f"table found ({table.inliers} points) but no object above it: "
                                f"{cand_points.shape[0]} points higher than {min_height * 1000:.0f} mm, "
                                f"no cluster of >= {cfg.min_cluster_points} pixels")
        return SceneAnalysis(camera, self.base_T_camera.copy(), depth, rgb, points, pixels, table,
                             cand_points, cand_pixels, clusters, timings)

    def _fit_table(self, points: np.ndarray) -> TablePlane:
        cfg = self.config
        n = points.shape[0]
        if n < cfg.min_table_points:
            raise NoTableError(f"only {n} workspace points (< min_table_points={cfg.min_table_points}); no table")
        # random subset (with replacement: a permutation of all points costs more than RANSAC itself),
        # seeded per frame so that the same frame always gives the same table
        rng = np.random.default_rng(cfg.seed)
        sample_idx = rng.integers(0, n, cfg.plane_sample_points) if n > cfg.plane_sample_points else np.arange(n)
        sample = points[sample_idx].astype(np.float64)
        cos_tilt = np.cos(np.radians(cfg.max_table_tilt_deg))
        o3 = o3d()
        o3.utility.random.seed(int(cfg.seed))
        remaining = np.ones(sample.shape[0], dtype=bool)
        reasons = []
        for _attempt in range(4):
            idx = np.flatnonzero(remaining)
            if idx.size < 3:
                break
            pcd = o3.geometry.PointCloud(o3.utility.Vector3dVector(sample[idx]))
            model, inl = pcd.segment_plane(cfg.plane_distance, 3, cfg.plane_iterations)
            inl = idx[np.asarray(inl, dtype=np.int64)]
            normal = np.asarray(model[:3], dtype=np.float64)
            norm = np.linalg.norm(normal)
            if inl.size < 3 or norm < 1e-9:
                break
            normal, offset = normal / norm, float(model[3]) / norm
            if normal[2] < 0:
                normal, offset = -normal, -offset
            remaining[inl] = False
            if normal[2] < cos_tilt:
                reasons.append(f"plane tilted {np.degrees(np.arccos(normal[2])):.0f} deg")
                continue
            h = _affine_dot(sample, normal, offset)
            below = np.count_nonzero(h < -3 * cfg.plane_distance)
            if below > 0.2 * max(1, np.count_nonzero(np.abs(h) >= cfg.plane_distance)) and below > 50:
                reasons.append(f"horizontal plane at height {-offset:.3f} m has {below} points below it")
                continue
            # Refine on every workspace point near the plane: a few rounds of (robust re-centring,
            # noise estimate, inliers within max(plane_distance, 2.5 sigma), least squares). This
            # converges to the same plane from any RANSAC hypothesis (open3d's parallel RANSAC is
            # not bit-reproducible) and removes the bias of a fixed band under heavy noise.
            noise, inlier_pts, ok = 0.0, points[:0], True
            stride = max(1, n // 10000)  # a strided subset of <= ~10k points is plenty for 3 parameters
            subset = points[::stride]
            for _round in range(3):
                signed = _affine_dot(subset, normal, offset)
                window = signed[np.abs(signed) < max(4 * cfg.plane_distance, 0.02)]
                if window.size * stride < cfg.min_table_points:
                    ok = False
                    break
                centre_h = float(np.median(window))
                noise = float(1.4826 * np.median(np.abs(window - centre_h)))
                threshold = max(cfg.plane_distance, 2.5 * noise) if cfg.adapt_to_noise else cfg.plane_distance
                inlier_pts = subset[np.abs(signed - centre_h) < threshold]
                if inlier_pts.shape[0] * stride < cfg.min_table_points:
                    ok = False
                    break
                centre, cov = _mean_cov(inlier_pts)
                refined = np.linalg.eigh(cov)[1][:, 0]  # smallest-variance direction
                refined = refined if refined[2] > 0 else -refined
                if refined[2] < cos_tilt:
                    break
                normal, offset = refined, float(-refined @ centre)
            if not ok:
                reasons.append(f"horizontal plane with only {inlier_pts.shape[0]} inliers")
                continue
            signed = _affine_dot(subset, normal, offset)
            inlier_pts = subset[np.abs(signed) < threshold]
            support = inlier_pts[:: max(1, inlier_pts.shape[0] // 4000)].astype(np.float64)
            support -= np.outer(_affine_dot(support, normal, offset), normal)  # project onto the plane
            return TablePlane(normal, offset, int(inlier_pts.shape[0]) * stride, support, noise)
        why = "; ".join(reasons) if reasons else "RANSAC found no plane"
        raise NoTableError(f"no table: no plane within {cfg.max_table_tilt_deg} deg of horizontal with >= "
                           f"{cfg.min_table_points} inliers among {n} workspace points ({why})")

    def _min_height(self, table: TablePlane) -> float:
        """Object points must be this high [m] above the table: ``object_min_height``, raised to 3
        noise standard deviations of the table's depth when ``adapt_to_noise``."""
        cfg = self.config
        return max(cfg.object_min_height, 3.0 * table.noise_std) if cfg.adapt_to_noise else cfg.object_min_height

    def normal_radius(self, table: TablePlane | None) -> float:
        """Normal-estimation radius [m]: ``normal_radius``, raised to 5 noise standard deviations
        (PCA normal error ~ noise / radius) when ``adapt_to_noise``."""
        cfg = self.config
        if not cfg.adapt_to_noise or table is None:
            return cfg.normal_radius
        return max(cfg.normal_radius, 5.0 * table.noise_std)

    def _cluster(self, points: np.ndarray, pixels: np.ndarray, width: int) -> list[Cluster]:
        cfg = self.config
        if points.shape[0] < cfg.min_cluster_points:
            return []
        keys3 = np.floor(points / np.float32(cfg.cluster_voxel)).astype(np.int64)
        keys3 -= keys3.min(axis=0)
        span = keys3.max(axis=0) + 1
        keys = (keys3[:, 0] * span[1] + keys3[:, 1]) * span[2] + keys3[:, 2]
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        centres = np.zeros((counts.size, 3))
        for k in range(3):
            centres[:, k] = np.bincount(inverse, weights=points[:, k], minlength=counts.size) / counts
        o3 = o3d()
        pcd = o3.geometry.PointCloud(o3.utility.Vector3dVector(centres))
        voxel_labels = np.asarray(pcd.cluster_dbscan(cfg.cluster_eps, cfg.cluster_min_voxels), dtype=np.int64)
        labels = voxel_labels[inverse]
        valid = labels >= 0
        if not np.any(valid):
            return []
        sizes = np.bincount(labels[valid])
        keep = [int(lbl) for lbl in np.argsort(-sizes, kind="stable") if sizes[lbl] >= cfg.min_cluster_points]
        if not keep:
            return []
        order = np.argsort(labels, kind="stable")
        starts = np.searchsorted(labels[order], np.arange(sizes.size + 1))
        out = []
        for lbl in keep:
            idx = order[starts[lbl]:starts[lbl + 1]]
            pts, pix = points[idx], pixels[idx]
            u, v = pix % width, pix // width
            out.append(Cluster(pix, pts, pts.mean(axis=0, dtype=np.float64), pts.min(axis=0).astype(np.float64),
                               pts.max(axis=0).astype(np.float64),
                               (int(u.min()), int(v.min()), int(u.max()), int(v.max()))))
        return out

    # ------------------------------------------------------------------------------------------
    def choose(self, analysis: SceneAnalysis, prompt: str | Prompt) -> tuple[int, Prompt]:
        """Index of the cluster that ``prompt`` selects (``default`` resolved), and the prompt used.

        Raises:
            BadPromptError: Unparsable prompt, index out of range, point/pixel not on an object.
        """
        cfg = self.config
        p = prompt if isinstance(prompt, Prompt) else parse_prompt(prompt)
        if p.kind == "default":
            p = parse_prompt(cfg.default_prompt)
        clusters = analysis.clusters
        if p.kind == "largest":
            return 0, p
        if p.kind == "nearest":
            ref = np.asarray(cfg.reference_point, dtype=np.float64)
            d = [np.linalg.norm(c.centroid[:2] - ref[:2]) for c in clusters]
            return int(np.argmin(d)), p
        if p.kind == "index":
            if not 0 <= p.index < len(clusters):
                raise BadPromptError(f"prompt {p.text!r}: index {p.index} out of range; {len(clusters)} object(s) "
                                     f"found (0..{len(clusters) - 1}, largest first)")
            return p.index, p
        if p.kind == "point":
            q = np.asarray(p.point, dtype=np.float32)
            d = [float(np.min(np.linalg.norm(c.points - q, axis=1))) for c in clusters]
            best = int(np.argmin(d))
            if d[best] > cfg.point_max_distance:
                raise BadPromptError(f"prompt {p.text!r}: no object within {cfg.point_max_distance * 100:.0f} cm of "
                                     f"the point (nearest is {d[best] * 100:.1f} cm away)")
            return best, p
        if p.kind == "pixel":
            cam = analysis.camera
            u, v = p.pixel
            if analysis.rgb is not None:  # colour pixel -> depth pixel
                u = u * cam.width / analysis.rgb.shape[1]
                v = v * cam.height / analysis.rgb.shape[0]
            if not (-0.5 <= u < cam.width - 0.5 and -0.5 <= v < cam.height - 0.5):
                raise BadPromptError(f"prompt {p.text!r}: pixel outside the {cam.width}x{cam.height} image")
            labels = analysis.label_image()
            ui, vi = int(round(u)), int(round(v))
            if labels[vi, ui] >= 0:
                return int(labels[vi, ui]), p
            r = int(np.ceil(cfg.pixel_search_radius))
            win = labels[max(0, vi - r):vi + r + 1, max(0, ui - r):ui + r + 1]
            vv, uu = np.nonzero(win >= 0)
            if vv.size:
                d2 = (vv + max(0, vi - r) - v) ** 2 + (uu + max(0, ui - r) - u) ** 2
                k = int(np.argmin(d2))
                if d2[k] <= cfg.pixel_search_radius ** 2:
                    return int(win[vv[k], uu[k]]), p
            raise BadPromptError(f"prompt {p.text!r}: no object at or within {cfg.pixel_search_radius:.0f} px of "
                                 "the pixel")
        raise BadPromptError(f"prompt {p.text!r}: unhandled kind {p.kind}")

    def select(self, analysis: SceneAnalysis, prompt: str | Prompt = "") -> PerceptionResult:
        """The target object's cloud with normals (see the module docstring).

        Raises:
            BadPromptError, SamError (SAM configured but unusable), NoObjectError (nothing left
            after outlier removal).
        """
        timings = dict(analysis.timings)
        timer = _Timer(timings)
        target, p = self.choose(analysis, prompt)
        cluster = analysis.clusters[target]
        cam = analysis.camera
        notes: list[str] = []
        source = "cluster"
        obj_points, obj_pixels = cluster.points, cluster.pixels
        timer.lap("select")
        if self.segmenter is not None:
            obj_points, obj_pixels, source = self._sam_refine(analysis, cluster, p, notes)
            timer.lap("sam")
        mask = np.zeros(cam.height * cam.width, dtype=bool)
        mask[obj_pixels] = True
        points, normals = self._object_cloud(obj_points, analysis.camera_position, self.normal_radius(analysis.table))
        timer.lap("object_cloud")
        if points.shape[0] < 3:
            raise NoObjectError(f"selected object ({obj_points.shape[0]} points) left {points.shape[0]} points after "
                                "down-sampling and outlier removal")
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        return PerceptionResult(analysis, p, target, points, normals, mask.reshape(cam.height, cam.width),
                                source, notes, timings)

    def _sam_refine(self, analysis: SceneAnalysis, cluster: Cluster, p: Prompt, notes: list[str]):
        rgb = analysis.rgb
        if rgb is None:
            raise SamError("Segment Anything is configured but no colour image was given")
        cam = analysis.camera
        sx, sy = rgb.shape[1] / cam.width, rgb.shape[0] / cam.height
        u0, v0, u1, v1 = cluster.pixel_box
        box = np.array([u0 * sx, v0 * sy, (u1 + 1) * sx, (v1 + 1) * sy], dtype=np.float64)
        point = np.asarray(p.pixel, dtype=np.float64) if p.kind == "pixel" else None
        mask_rgb = self.segmenter.segment(rgb, box=box, point=point)
        # colour grid -> depth grid (nearest)
        cols = np.minimum((np.arange(cam.width) * sx + 0.5 * sx).astype(np.int64), rgb.shape[1] - 1)
        rows = np.minimum((np.arange(cam.height) * sy + 0.5 * sy).astype(np.int64), rgb.shape[0] - 1)
        mask = mask_rgb[np.ix_(rows, cols)].ravel()
        sel = mask[analysis.candidate_pixels]
        if np.count_nonzero(sel) < self.config.min_cluster_points:
            notes.append(f"SAM mask covers {int(np.count_nonzero(sel))} object-candidate pixels "
                         f"(< {self.config.min_cluster_points}); kept the depth cluster")
            return cluster.points, cluster.pixels, "cluster"
        return analysis.candidate_points[sel], analysis.candidate_pixels[sel], "sam"

    def _object_cloud(self, points: np.ndarray, camera_position: np.ndarray,
                      normal_radius: float) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        o3 = o3d()
        pcd = o3.geometry.PointCloud(o3.utility.Vector3dVector(points.astype(np.float64)))
        pcd = pcd.voxel_down_sample(cfg.voxel_size)
        if len(pcd.points) > cfg.outlier_neighbors + 1:
            pcd, _ = pcd.remove_statistical_outlier(cfg.outlier_neighbors, cfg.outlier_std_ratio)
        if len(pcd.points) > cfg.max_points:
            pcd = pcd.farthest_point_down_sample(cfg.max_points)
        if len(pcd.points) < 3:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
        max_nn = max(cfg.normal_max_nn, int(cfg.normal_max_nn * (normal_radius / cfg.normal_radius) ** 2))
        pcd.estimate_normals(o3.geometry.KDTreeSearchParamHybrid(radius=normal_radius, max_nn=max_nn))
        pts = np.asarray(pcd.points)
        nrm = np.asarray(pcd.normals).copy()
        if cfg.normal_orientation == "camera":
            flip = np.einsum("ij,ij->i", nrm, camera_position[None, :] - pts) < 0
        else:
            flip = np.einsum("ij,ij->i", nrm, pts - pts.mean(axis=0)) < 0
        nrm[flip] *= -1
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        return pts.astype(np.float32), nrm.astype(np.float32)
