"""Object surface from an oriented point cloud: a signed-distance and normal grid (torch).

The optimiser needs, at any point ``x`` near the object, a signed distance ``sdf(x)`` [m]
(negative inside) and a smooth outward normal ``n(x)``, both differentiable in ``x``. We build
them once per cloud on a regular grid and interpolate trilinearly (``grid_sample``):

* per voxel, the ``k`` nearest cloud points ``p_k`` with normals ``n_k`` (scipy cKDTree);
* Gaussian weights ``w_k = exp(-(|x-p_k|^2 - |x-p_1|^2) / 2h^2)`` (``h`` = cloud spacing);
* point-to-plane distance ``d = sum w_k (x-p_k).n_k / sum w_k`` (a moving-least-squares plane),
  signed by it; magnitude ``max(|d|, |x-p_1| - h)`` so that it grows like the Euclidean distance away
  from the surface and is continuous; normal ``normalize(sum w_k n_k)``.

Partial single-view clouds are completed first by mirror symmetry (Bohg et al. 2011, "Mind the
gap"): the view direction is estimated as the mean normal (normals face the camera); the visible
surface is reflected about the plane perpendicular to it, the smaller lateral half-extent behind the
front-most point; mirrored points that would lie in front of the observed surface along the view
(where the camera saw free space) and points below the table are dropped.

Per-slice mirror planes (``SurfaceConfig.local_mirror``, the default): one plane cannot hold the axis
of an elongated object whose axis recedes from the camera (a bottle or cone lying on the table, seen
along part of its length): its far end was completed too thin and its near end too thick. The cloud
is cut into slices across its long lateral axis and each slice's plane lies its own half-width behind
its own front-most point (:func:`local_mirror_offsets`). Measured on the ``builtin/test`` objects
(13 objects x 2 placements x the two robots' cameras, true mesh surface samples against the built
surface; one-off script): mean ``|sdf|`` 1.96 -> 1.58 mm, p90 5.49 -> 4.27 mm, within 5 mm 88.5 ->
93.0 % (bottle 2.38 -> 1.32 mm, cone 2.69 -> 1.96 mm, banana 1.85 -> 1.02 mm; ball 1.16 -> 1.28 mm and
torus 1.54 -> 1.80 mm worse).

Free-space carving (``SurfaceConfig.carve``): the reflection of a surface that is not
perpendicular to the view (the top of a flat object seen at an angle) crosses the observed surface,
so mirrored points with flipped normals lie next to observed ones and the moving-least-squares sign
turns "inside" in the space above the object that the camera saw empty (measured on the
``builtin/test`` scenes: 15 % of the points 3-20 mm outside the true objects were called inside,
up to 10 cm above a 2.5 cm block). Every grid voxel in front of the observed surface along the view
direction (a z-buffer of the observed points, orthographic along the estimated view) is outside:
its signed distance is made positive.

Table support (``SurfaceConfig.extrude``, partial clouds on a table): a camera above the table sees
an object's top and near side; what lies under them, down to the table, is hidden, and the mirror
plane (perpendicular to the view, half a lateral extent behind the front) closes a tall object far
above the table (a 20 cm bottle seen from 22 deg off vertical became a 6 cm one). Objects stand on
the table, so the completed silhouette (seen from above) is extended straight down to it: walls of
points with horizontal outward normals under the boundary cells of the completed cloud's top-view
raster, kept where no cloud point is near and where the camera did not see free space. Measured on
the 20 ``builtin/test`` scenes of the end-to-end benchmark (ur5e_leap camera, seeds 1000-1019;
one-off script comparing with the true meshes): true-surface samples' mean ``|sdf|`` 4.3 -> 2.4 mm,
p90 12.1 -> 6.3 mm, within 5 mm 72 -> 86 %; every object improved (bottle 13.3 -> 6.7 mm, box
7.0 -> 1.5 mm); without any completion 8.4 mm.

Frames: everything is in the cloud's frame (the robot base frame, z up, table top at ``table_z``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class SurfaceConfig:
    """Grid and completion settings.

    Attributes:
        max_points: The cloud is voxel-downsampled to at most this many points.
        voxel: Grid spacing bounds [m] (min, max); the grid has at most ``max_cells`` per axis.
        max_cells: Largest grid dimension.
        pad: Margin of the grid around the object [m]; beyond it distances are extrapolated.
        k: Neighbours per voxel.
        cloud_kind: ``auto`` (decide from the normals), ``complete`` or ``partial``.
        partial_threshold: ``auto`` calls a cloud partial when the norm of its mean normal exceeds this
            (a closed surface sampled uniformly has mean normal ~0; one view ~0.4-0.8).
        completion: ``mirror`` or ``none`` for partial clouds.
        local_mirror: Mirror each slice across the long lateral axis about its own plane (see module
            doc), else about one plane.
        carve: Make every voxel that the camera saw as free space (in front of the observed surface
            along the view) outside (see module doc); partial clouds only.
        extrude: Extend a completed partial cloud's silhouette down to the table (see module doc);
            needs ``table_z``.
        cuboid: Complete a partial cloud that is one view of a box standing on the table as that box
            (:func:`cuboid_complete`; needs ``table_z``), else mirror it.
    """

    max_points: int = 3000
    voxel: tuple[float, float] = (0.003, 0.006)
    max_cells: int = 72
    pad: float = 0.05
    k: int = 6
    cloud_kind: str = "auto"
    partial_threshold: float = 0.3
    completion: str = "mirror"
    local_mirror: bool = True
    carve: bool = True
    extrude: bool = True
    cuboid: bool = True


def voxel_downsample(points: np.ndarray, normals: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic voxel-grid downsampling (first point per voxel, voxel size doubled until small enough)."""
    if len(points) <= max_points:
        return points, normals
    ext = np.ptp(points, axis=0).max()
    size = max(ext / 200.0, 1e-4)
    while True:
        keys = np.floor((points - points.min(0)) / size).astype(np.int64)
        _, idx = np.unique(keys, axis=0, return_index=True)
        if len(idx) <= max_points:
            idx = np.sort(idx)
            return points[idx], normals[idx]
        size *= 1.25


def mean_spacing(points: np.ndarray) -> float:
    """Median distance to the nearest other point [m]."""
    if len(points) < 2:
        return 0.005
    d, _ = cKDTree(points).query(points, k=2)
    return float(np.median(d[:, 1]))


def is_partial(normals: np.ndarray, threshold: float) -> bool:
    """True when the unit normals mostly face one way (a single view)."""
    return bool(np.linalg.norm(normals.mean(0)) > threshold)


def local_mirror_offsets(proj: np.ndarray, depth: np.ndarray, spacing: float, half_min: float,
                         min_points: int = 8) -> np.ndarray:
    """Per point, the depth [m] of its mirror plane, from slices across the long lateral axis.

    The visible points are cut into slices along the first lateral axis (``proj[:, 0]``, the longer
    extent). In each slice the plane lies one local half-width (robust extent along ``proj[:, 1]``
    within the slice, at most ``half_min``) behind the slice's front-most point. For an object that
    is a solid of revolution about the long axis (a bottle or cone lying down) this puts the plane
    through the local axis (the neck of a lying bottle is no longer completed as deep as its body);
    for a sphere it is exact; for a box it is the global plane. Slices with fewer than
    ``min_points`` points take their neighbours' values (nearest filled slice).

    Args:
        proj: (N, 2) lateral coordinates [m] (axis 0 the longer extent); depth: (N,) [m], larger = farther.
        spacing: Cloud spacing [m]; half_min: the global half-width [m] (the cap).

    Returns:
        (N,) plane depth per point [m].
    """
    lo, hi = np.percentile(proj[:, 0], [1, 99])
    width = max(3.0 * spacing, (hi - lo) / 24.0, 1e-3)
    k = np.clip(np.floor((proj[:, 0] - lo) / width).astype(int), 0, None)
    n_bins = int(k.max()) + 1
    plane_of = np.full(n_bins, np.nan)
    for b in range(n_bins):
        m = k == b
        if m.sum() < min_points:
            continue
        q = proj[m, 1]
        half = min(0.5 * float(np.percentile(q, 98) - np.percentile(q, 2)), half_min)
        plane_of[b] = float(depth[m].min()) + half
    filled = np.nonzero(np.isfinite(plane_of))[0]
    if len(filled) == 0:
        return np.full(len(depth), float(depth.min()) + half_min)
    nearest = filled[np.abs(np.arange(n_bins)[:, None] - filled[None]).argmin(1)]
    return plane_of[nearest][k]


def mirror_complete(points: np.ndarray, normals: np.ndarray, table_z: float | None = None,
                    local: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Complete a single-view cloud by reflecting it about a plane behind it (see module doc).

    Args:
        local: The plane's depth per slice across the long axis (:func:`local_mirror_offsets`), else one
            plane for the whole cloud at the smaller lateral half-extent behind its front-most point.

    Returns:
        ``(points (N', 3), normals (N', 3), info)`` with the original points first; ``info`` has the
        estimated ``view_dir`` (unit, from the object toward the camera) and ``plane_offset`` [m] (the
        global plane's offset behind the front-most point).
    """
    s = normals.mean(0)
    s = s / max(np.linalg.norm(s), 1e-9)
    c = points.mean(0)
    depth = (points - c) @ (-s)  # larger = farther from the camera
    lateral = (points - c) - np.outer((points - c) @ s, s)
    # lateral half-extents along the principal axes of the projected points (robust percentiles)
    _, _, vt = np.linalg.svd(lateral - lateral.mean(0), full_matrices=False)
    proj = lateral @ vt[:2].T
    half = 0.5 * (np.percentile(proj, 98, axis=0) - np.percentile(proj, 2, axis=0))
    front = depth.min()
    plane_global = front + float(half.min())
    spacing = max(mean_spacing(points), 1e-3)
    if local:
        plane = local_mirror_offsets(proj, depth, spacing, float(half.min()))
    else:
        plane = np.full(len(points), plane_global)
    mirrored = points + (2 * (plane - depth))[:, None] * (-s)
    mnormals = normals - 2 * np.outer(normals @ s, s)
    # free-space consistency: drop mirrored points that would lie in front of the observed surface
    # along the view direction (the camera saw through there)
    lat2 = proj
    tree = cKDTree(lat2)
    dist, idx = tree.query(lat2, k=min(8, len(points)))
    dist, idx = dist.reshape(len(points), -1), idx.reshape(len(points), -1)
    near = dist <= 2.0 * spacing
    seen_depth = np.where(near, depth[idx], np.inf).min(1)
    mdepth = 2 * plane - depth
    keep = mdepth >= seen_depth - 0.5 * spacing
    if table_z is not None:  # the object stands on the table: nothing of it is below
        keep &= mirrored[:, 2] > table_z
    out_p = np.concatenate([points, mirrored[keep]])
    out_n = np.concatenate([normals, mnormals[keep]])
    return out_p, out_n, {"view_dir": s, "plane_offset": float(plane_global - front)}


def cuboid_complete(points: np.ndarray, normals: np.ndarray, table_z: float, spacing: float,
                    max_tilt_deg: float = 20.0, min_fit: float = 0.9, tol: float = 0.001) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """Complete a single view of a box standing on the table as that box, or None if it is not one.

    A camera above the table sees a box's top face whole, and the top face spans both horizontal
    axes; with the table under it the whole box is known. The cloud is taken as a box when:

    * at least ``min_fit`` of its normals are within ``max_tilt_deg`` of up (the top, at least 10 % of
      the points) or of horizontal (the sides);
    * the sides' normals are 90-degree periodic in azimuth (resultant of ``exp(4 i phi)`` >= 0.8); its
      angle gives the box's yaw (with fewer than 5 % side points, the yaw of the top points' smallest
      bounding rectangle);
    * 99 % of the points lie within ``max(tol, 4 sigma)`` [m] of the surface of the box spanned
      by the points along those axes (a face that is seen: the median position of its points; else
      the points' 0.5 / 99.5 percentile), from ``table_z`` up to the top face's median height
      (``sigma``: the points' robust scatter about that surface, 1.4826 x the median distance, so
      that a noisier sensor is not refused; a step or notch leaves a tail of points farther off).

    Returns:
        ``(points, normals, info)``: the observed points first, then samples every ``spacing`` on the
        box's faces (the bottom on the table included) where no observed point is within 1.5
        spacings and the camera did not see through (:func:`free_space`), with the faces' outward
        normals; ``info`` has ``box_center`` (3,) [m],
        ``box_size`` (3,) [m] (along the box's axes), ``box_yaw`` [rad]. None when the tests fail
        (the caller then mirrors).
    """
    if len(points) < 30:
        return None
    c_tilt = np.cos(np.radians(max_tilt_deg))
    s_tilt = np.sin(np.radians(max_tilt_deg))
    top = normals[:, 2] > c_tilt
    side = np.abs(normals[:, 2]) < s_tilt
    if (top | side).mean() < min_fit or top.mean() < 0.1:
        return None
    if side.mean() >= 0.05:
        phi = np.arctan2(normals[side, 1], normals[side, 0])
        r4 = np.exp(4j * phi).mean()
        if abs(r4) < 0.8:
            return None
        yaw = float(np.angle(r4) / 4.0)
    else:  # smallest bounding rectangle of the top face's points, 1-degree steps
        xy = points[top, :2]
        angles = np.radians(np.arange(0.0, 90.0, 1.0))
        areas = [np.prod(np.ptp(xy @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]), axis=0)) for a in angles]
        yaw = float(angles[int(np.argmin(areas))])
    e1 = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    e2 = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
    R = np.stack([e1, e2, [0.0, 0.0, 1.0]], 1)  # world_R_box, columns the box's axes
    local = points @ R  # (N, 3) in the box's axes (no translation)
    z_top = float(np.median(points[top, 2]))
    if z_top - table_z < 2 * spacing:
        return None
    n_local = normals @ R
    lo, hi = np.array([0.0, 0.0, table_z]), np.array([0.0, 0.0, z_top])
    for axis in (0, 1):
        for sign, bound, pct in ((-1.0, lo, 0.5), (1.0, hi, 99.5)):
            face = sign * n_local[:, axis] > c_tilt
            bound[axis] = (np.median(local[face, axis]) if face.sum() >= 20
                           else np.percentile(local[:, axis], pct))
    if np.any(hi - lo < 2 * spacing):  # faces out of order or a sliver: not a box we can trust
        return None
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    q = np.abs(local - mid) - half  # box sdf in the box's axes
    sdf = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    noise = 1.4826 * float(np.median(np.abs(sdf)))  # the points' scatter about the box (robust sigma) [m]
    if np.percentile(np.abs(sdf), 99) > max(tol, 4.0 * noise):
        return None
    # samples on the six faces every spacing (the box's own axes), outward normals
    step = max(spacing, 1e-3)
    grids = [np.linspace(lo[i], hi[i], max(2, int(np.ceil((hi[i] - lo[i]) / step)) + 1)) for i in range(3)]
    faces_p, faces_n = [], []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        ua, ub = np.meshgrid(grids[a], grids[b], indexing="ij")
        for sign, value in ((-1.0, lo[axis]), (1.0, hi[axis])):
            f = np.zeros((ua.size, 3))
            f[:, a], f[:, b], f[:, axis] = ua.ravel(), ub.ravel(), value
            n = np.zeros((ua.size, 3))
            n[:, axis] = sign
            faces_p.append(f)
            faces_n.append(n)
    box_p = np.concatenate(faces_p) @ R.T
    box_n = np.concatenate(faces_n) @ R.T
    d, _ = cKDTree(points).query(box_p)
    keep = d > 1.5 * spacing
    view = normals.mean(0)  # normals face the camera (as in mirror_complete)
    view = view / max(np.linalg.norm(view), 1e-9)
    keep &= ~free_space(points, view, box_p, spacing)  # e.g. over a notch that the camera saw into
    info = {"box_center": (R @ mid).tolist(), "box_size": (hi - lo).tolist(), "box_yaw": yaw,
            "box_points": int(keep.sum())}
    return np.concatenate([points, box_p[keep]]), np.concatenate([normals, box_n[keep]]), info


def extrude_to_table(points: np.ndarray, normals: np.ndarray, table_z: float, observed: np.ndarray,
                     view_dir: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Walls from the boundary of ``points``' top-view silhouette straight down to the table.

    The silhouette is a raster of cells of 1.5 cloud spacings in x/y; a boundary cell (an occupied
    cell with an empty 4-neighbour) gets a column of points every spacing from the table up to
    one spacing below its lowest point, with the horizontal outward normal of its empty neighbours.
    Column points within 1.5 spacings of a cloud point, or where the camera saw free space (in
    front of ``observed`` along ``view_dir``, see :func:`free_space`), are dropped.

    Args:
        points, normals: (N, 3) the completed cloud [m] and its unit normals.
        table_z: Table height [m] (z up).
        observed: (M, 3) the observed (not completed) points [m]; view_dir: (3,) unit, toward the camera.

    Returns:
        ``(points, normals, added)`` with the original points first.
    """
    spacing = max(mean_spacing(points), 2e-3)
    cell = 1.5 * spacing
    lo = points[:, :2].min(0) - 2 * cell
    ij = np.floor((points[:, :2] - lo) / cell).astype(int)
    shape = tuple(ij.max(0) + 3)
    zmin = np.full(shape, np.inf)
    np.minimum.at(zmin, (ij[:, 0], ij[:, 1]), points[:, 2])
    occ = np.isfinite(zmin)
    out = np.zeros(shape + (2,))
    for axis, step in ((0, 1), (0, -1), (1, 1), (1, -1)):  # sum of the directions to empty neighbours
        empty = ~np.roll(occ, -step, axis=axis)
        out[..., axis] += step * (occ & empty)
    a, b = np.nonzero(np.linalg.norm(out, axis=-1) > 0)
    if len(a) == 0:
        return points, normals, 0
    nrm2 = out[a, b] / np.linalg.norm(out[a, b], axis=-1, keepdims=True)
    xy = lo + (np.stack([a, b], 1) + 0.5) * cell
    top = zmin[a, b] - spacing
    n_max = int(max(np.ceil((top.max() - table_z) / spacing), 0))
    if n_max == 0:
        return points, normals, 0
    z = table_z + (np.arange(n_max) + 0.5) * spacing  # (K,)
    use = z[None, :] < top[:, None]  # (C, K)
    c_idx, k_idx = np.nonzero(use)
    q = np.column_stack([xy[c_idx], z[k_idx]])
    qn = np.column_stack([nrm2[c_idx], np.zeros(len(c_idx))])
    if len(q) == 0:
        return points, normals, 0
    d, _ = cKDTree(points).query(q)
    keep = d > 1.5 * spacing
    keep &= ~free_space(observed, view_dir, q, max(mean_spacing(observed), 1e-3))
    return np.concatenate([points, q[keep]]), np.concatenate([normals, qn[keep]]), int(keep.sum())


@dataclass
class ObjectSurface:
    """Signed-distance/normal grid of one object (see module doc). Build with :func:`build_surface`.

    Attributes:
        points, normals: (N, 3) the (downsampled, completed) cloud as tensors [m].
        center: (3,) centroid of ``points`` [m] (the wrench reference point).
        radius: RMS distance of the points from the centre [m] (the torque length).
        lo, hi: (3,) grid bounds [m]; ``voxel`` [m].
        grid: (1, 4, D, H, W) channels sdf [m], nx, ny, nz; axes (z, y, x).
        partial: the input was judged a single view; ``completed``: mirror completion applied.
        spacing: cloud spacing [m].
    """

    points: torch.Tensor
    normals: torch.Tensor
    center: torch.Tensor
    radius: float
    lo: torch.Tensor
    hi: torch.Tensor
    voxel: float
    grid: torch.Tensor
    partial: bool
    completed: bool
    spacing: float
    info: dict

    def query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed distance [m] (...,) and unit outward normal (..., 3) at points ``x`` (..., 3).

        Differentiable in ``x``. Outside the grid the distance is the border value plus the
        distance to the grid box.
        """
        shape = x.shape[:-1]
        u = 2 * (x.reshape(1, 1, 1, -1, 3) - self.lo) / (self.hi - self.lo) - 1
        val = F.grid_sample(self.grid, u, mode="bilinear", padding_mode="border", align_corners=True)
        val = val.reshape(4, -1).T  # (P, 4)
        sdf = val[:, 0] + self._outside(x.reshape(-1, 3))
        nrm = val[:, 1:]
        nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return sdf.reshape(shape), nrm.reshape(*shape, 3)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distance only [m] (...,) at ``x`` (..., 3) (cheaper than :meth:`query`)."""
        shape = x.shape[:-1]
        u = 2 * (x.reshape(1, 1, 1, -1, 3) - self.lo) / (self.hi - self.lo) - 1
        val = F.grid_sample(self.grid[:, :1], u, mode="bilinear", padding_mode="border", align_corners=True)
        return (val.reshape(-1) + self._outside(x.reshape(-1, 3))).reshape(shape)

    def _outside(self, x: torch.Tensor) -> torch.Tensor:
        """Distance [m] from the grid box (0 inside), (P,); zero gradient inside (no sqrt(0) NaN)."""
        out = x - torch.minimum(torch.maximum(x, self.lo), self.hi)
        sq = out.square().sum(-1)
        return torch.where(sq > 0, sq.clamp_min(1e-20).sqrt(), torch.zeros_like(sq))

    def to(self, device=None, dtype=None) -> "ObjectSurface":
        def mv(t):
            return t.to(device=device or t.device, dtype=dtype or t.dtype)

        return ObjectSurface(mv(self.points), mv(self.normals), mv(self.center), self.radius, mv(self.lo), mv(self.hi),
                             self.voxel, mv(self.grid), self.partial, self.completed, self.spacing, self.info)

    @property
    def extent(self) -> np.ndarray:
        """(3,) axis-aligned extent of the (completed) cloud [m]."""
        p = self.points.detach().cpu().numpy()
        return np.ptp(p, axis=0)


def _view_basis(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([0.0, 0.0, 1.0]) if abs(s[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(s, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(s, e1)


def free_space(observed: np.ndarray, view_dir: np.ndarray, queries: np.ndarray, spacing: float) -> np.ndarray:
    """(Q,) bool: the query points lie in front of the observed surface along ``view_dir`` (unit, from
    the object toward the camera), where the camera saw through: an orthographic z-buffer of the
    observed points on cells of ``spacing``, each cell the nearest depth of its 3 x 3 neighbourhood
    (so that gaps between samples do not let rays through); a query is free when it is more than one
    spacing nearer to the camera than that depth. Queries off the observed silhouette are not free
    (the camera saw nothing there to tell)."""
    e1, e2 = _view_basis(view_dir)
    c = observed.mean(0)
    cell = max(spacing, 1e-3)
    uv = np.stack([(observed - c) @ e1, (observed - c) @ e2], 1) / cell
    depth = (observed - c) @ view_dir  # larger = nearer to the camera
    lo = np.floor(uv.min(0)).astype(int) - 2
    ij = np.floor(uv).astype(int) - lo
    shape = ij.max(0) + 3
    buf = np.full(shape, -np.inf)
    np.maximum.at(buf, (ij[:, 0], ij[:, 1]), depth)
    pad = np.pad(buf, 1, constant_values=-np.inf)
    near = np.max([pad[1 + a:1 + a + shape[0], 1 + b:1 + b + shape[1]] for a in (-1, 0, 1) for b in (-1, 0, 1)], axis=0)
    qv = np.floor(np.stack([(queries - c) @ e1, (queries - c) @ e2], 1) / cell).astype(int) - lo
    inside = (qv >= 0).all(1) & (qv < shape).all(1)
    qd = (queries - c) @ view_dir
    out = np.ones(len(queries), dtype=bool)
    k = np.nonzero(inside)[0]
    out[k] = qd[k] > near[qv[k, 0], qv[k, 1]] + spacing
    return out


def _grid_values(points: np.ndarray, normals: np.ndarray, queries: np.ndarray, k: int, h: float,
                 chunk: int = 16384) -> np.ndarray:
    """(Q, 4) signed distance [m] and unit normal at ``queries`` (Q, 3) (see module doc).

    Evaluated ``chunk`` queries at a time: the (chunk, k, 3) temporaries stay a few MB (the whole
    grid at once made ~250 MB of them per call, and their page faults made the build time vary
    between 0.3 and 0.9 s for the same cloud)."""
    tree = cKDTree(points)
    k = min(k, len(points))
    offset = np.einsum("pc,pc->p", points, normals)  # n_k . p_k: plane_k(x) = n_k . x - n_k . p_k
    out = np.empty((len(queries), 4))
    for a in range(0, len(queries), chunk):
        x = queries[a:a + chunk]
        dist, idx = tree.query(x, k=k, workers=-1)
        if k == 1:
            dist, idx = dist[:, None], idx[:, None]
        w = np.exp(-(dist**2 - dist[:, :1] ** 2) / (2 * h * h))
        n = normals[idx]
        plane = np.einsum("qc,qkc->qk", x, n) - offset[idx]
        wsum = w.sum(1)
        d = np.einsum("qk,qk->q", w, plane) / wsum
        mag = np.maximum(np.abs(d), dist[:, 0] - h)
        out[a:a + chunk, 0] = np.sign(d) * mag
        nrm = np.einsum("qk,qkc->qc", w, n)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
        out[a:a + chunk, 1:] = nrm
    return out


def build_surface(points: np.ndarray, normals: np.ndarray, cfg: SurfaceConfig | None = None,
                  table_z: float | None = None, device="cpu", dtype=torch.float32) -> ObjectSurface:
    """Downsample, complete (if partial), and grid an oriented cloud.

    Args:
        points: (N, 3) [m]; normals: (N, 3) outward unit normals (finite; validated by the caller).
        cfg: Settings.
        table_z: Table height [m] (mirror points below it are dropped), or None.
        device, dtype: Where the grid lives.
    """
    cfg = cfg or SurfaceConfig()
    points = np.asarray(points, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    points, normals = voxel_downsample(points, normals, cfg.max_points)
    partial = {"auto": is_partial(normals, cfg.partial_threshold), "partial": True, "complete": False}[cfg.cloud_kind]
    info: dict = {"input_points": int(len(points))}
    completed = False
    observed = points
    observed_spacing = max(mean_spacing(observed), 1e-3) if partial else 0.0  # the carving's and the box's
    box = None
    if partial and cfg.completion == "mirror" and cfg.cuboid and table_z is not None:
        box = cuboid_complete(points, normals, table_z, observed_spacing)
    if box is not None:
        points, normals, binfo = box
        info.update(binfo)
        info["completion"] = "cuboid"
        completed = True
    elif partial and cfg.completion == "mirror":
        points, normals, minfo = mirror_complete(points, normals, table_z, cfg.local_mirror)
        info.update(minfo)
        info["completion"] = "mirror"
        completed = True
        if cfg.extrude and table_z is not None:
            points, normals, added = extrude_to_table(points, normals, table_z, observed, minfo["view_dir"])
            info["extruded_points"] = added
    spacing = mean_spacing(points)
    h = float(np.clip(1.5 * spacing, 0.002, 0.01))
    lo = points.min(0) - cfg.pad
    hi = points.max(0) + cfg.pad
    ext = hi - lo
    voxel = float(np.clip(ext.max() / (cfg.max_cells - 1), cfg.voxel[0], cfg.voxel[1]))
    dims = np.minimum(np.ceil(ext / voxel).astype(int) + 1, cfg.max_cells)
    hi = lo + (dims - 1) * voxel
    if np.any(hi < points.max(0) + 0.5 * cfg.pad):  # capped: stretch the voxel along that axis
        hi = np.maximum(hi, points.max(0) + cfg.pad)
    axes = [np.linspace(lo[i], hi[i], dims[i]) for i in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    queries = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], 1)
    vals = _grid_values(points, normals, queries, cfg.k, h)
    if partial and cfg.carve:
        view = normals[: len(observed)].mean(0)  # as in mirror_complete: normals face the camera
        view = view / max(np.linalg.norm(view), 1e-9)
        free = free_space(observed, np.asarray(view), queries, observed_spacing)
        vals[free, 0] = np.abs(vals[free, 0])
        info["carved_voxels"] = int(free.sum())
    grid = vals.T.reshape(4, dims[2], dims[1], dims[0])[None]
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
    center = points.mean(0)
    radius = float(np.sqrt(((points - center) ** 2).sum(1).mean()))
    info.update({"grid_dims": dims.tolist(), "voxel": voxel, "h": h})
    return ObjectSurface(t(points), t(normals), t(center), radius, t(lo), t(hi), voxel, t(grid).contiguous(),
                         partial, completed, spacing, info)
