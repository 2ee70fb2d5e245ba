"""Pinhole camera model, image decoding and depth back-projection (ROS-free).

Conventions: image pixel ``(u, v)`` = (column, row), origin at the centre of the top-left pixel
(ROS ``sensor_msgs/CameraInfo``). The optical frame is REP-103's ``*_optical_frame``: z forward
along the optical axis, x right, y down. Depth images hold the z coordinate [m] of the surface
seen by each pixel (``16UC1``/``mono16`` in millimetres, ``32FC1`` in metres; 0, NaN and inf mean
invalid), i.e. the rectified ``image_rect_raw`` of a RealSense or Azure Kinect.

Distortion: none (all coefficients zero or no coefficients), ``plumb_bob`` (k1 k2 p1 p2 k3) and
``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6) are handled exactly per pixel: the rays of the
(distorted) pixel grid are undistorted once per camera model by fixed-point iteration (the method
of OpenCV's ``undistortPoints``), so a distorted depth image back-projects without resampling.
Other models with non-zero coefficients raise :class:`UnsupportedDistortionError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dex_perception.errors import (
    CameraInfoError,
    EncodingError,
    ImageError,
    SizeMismatchError,
    UnsupportedDistortionError,
)

MAX_IMAGE_SIDE = 16384  # [px] larger images are rejected as malformed
DEPTH_ENCODINGS = {"16UC1": (np.uint16, 1e-3), "mono16": (np.uint16, 1e-3), "32FC1": (np.float32, 1.0)}
COLOR_ENCODINGS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)),
                   "bgra8": (4, (2, 1, 0)), "mono8": (1, (0, 0, 0))}
_DISTORTION_LEN = {"plumb_bob": 5, "rational_polynomial": 8}


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Intrinsics of one camera stream.

    Attributes:
        width, height: Image size [px].
        K: (3, 3) camera matrix [px]: ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
        distortion_model: ``""``/``"none"``, ``"plumb_bob"`` or ``"rational_polynomial"``.
        D: Distortion coefficients (empty or all zero = none).
        frame_id: The optical frame name from the camera info (informational).
    """

    width: int
    height: int
    K: np.ndarray
    distortion_model: str = ""
    D: tuple[float, ...] = ()
    frame_id: str = ""
    _rays: list = field(default_factory=list, repr=False, compare=False)

    @staticmethod
    def from_camera_info(width: int, height: int, k: Sequence[float], d: Sequence[float] = (),
                         distortion_model: str = "", frame_id: str = "") -> "CameraModel":
        """Build and validate from ``sensor_msgs/CameraInfo`` fields (``k`` = row-major 3x3).

        Raises:
            CameraInfoError: zero size, non-finite or non-positive focal lengths, malformed K.
            UnsupportedDistortionError: non-zero coefficients of an unsupported model.
        """
        try:
            width, height = int(width), int(height)
            kk = np.asarray(list(k), dtype=np.float64)
            dd = tuple(float(v) for v in d)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CameraInfoError(f"camera info fields are not numeric: {exc}") from None
        if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
            raise CameraInfoError(f"camera info size {width}x{height} px is empty or larger than {MAX_IMAGE_SIDE}")
        if kk.size != 9:
            raise CameraInfoError(f"camera info K must have 9 entries, got {kk.size}")
        kk = kk.reshape(3, 3)
        if not np.all(np.isfinite(kk)):
            raise CameraInfoError(f"camera info K has non-finite entries: {kk.ravel().tolist()}")
        fx, fy, cx, cy = kk[0, 0], kk[1, 1], kk[0, 2], kk[1, 2]
        if fx <= 0 or fy <= 0:
            raise CameraInfoError(f"camera info focal lengths must be > 0 (uncalibrated camera?), got fx={fx}, fy={fy}")
        if not np.allclose(kk[2], [0.0, 0.0, 1.0]) or kk[1, 0] != 0:
            raise CameraInfoError(f"camera info K must be upper triangular with last row [0 0 1], got {kk.ravel().tolist()}")
        if not (-width <= cx <= 2 * width and -height <= cy <= 2 * height):
            raise CameraInfoError(f"principal point ({cx}, {cy}) is far outside the {width}x{height} image")
        if not all(math.isfinite(v) for v in dd):
            raise CameraInfoError(f"distortion coefficients must be finite, got {list(dd)}")
        model = (distortion_model or "").strip()
        if any(v != 0.0 for v in dd):
            if model not in _DISTORTION_LEN:
                raise UnsupportedDistortionError(
                    f"distortion model {model!r} with non-zero coefficients is not supported "
                    f"(supported: none, plumb_bob, rational_polynomial); publish a rectified depth image")
            if len(dd) < _DISTORTION_LEN[model]:
                raise CameraInfoError(f"{model} needs {_DISTORTION_LEN[model]} coefficients, got {len(dd)}")
        else:
            model, dd = "", ()
        return CameraModel(width, height, kk, model, dd, str(frame_id))

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def same_as(self, other: "CameraModel | None") -> bool:
        """True when ``other`` has the same size, K and distortion."""
        return (other is not None and self.width == other.width and self.height == other.height
                and np.array_equal(self.K, other.K) and self.distortion_model == other.distortion_model
                and self.D == other.D)

    def rays(self) -> np.ndarray:
        """(H, W, 2) float32 undistorted normalised coordinates ``(x/z, y/z)`` of every pixel (cached)."""
        if not self._rays:
            u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
            skew = self.K[0, 1]
            y = (v - self.cy) / self.fy
            x = (u - self.cx - skew * y) / self.fx
            if self.distortion_model:
                x, y = _undistort(x, y, self.D, self.distortion_model)
            self._rays.append(np.stack([x, y], axis=-1).astype(np.float32))
        return self._rays[0]

    def project(self, points_optical: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates (u, v) [px] of (N, 3) optical-frame points (pinhole; distortion
        ignored, used only for prompts and display)."""
        p = np.asarray(points_optical, dtype=np.float64)
        z = np.where(np.abs(p[:, 2]) < 1e-9, 1e-9, p[:, 2])
        return np.stack([self.fx * p[:, 0] / z + self.K[0, 1] * p[:, 1] / z + self.cx, self.fy * p[:, 1] / z + self.cy], 1)


def _undistort(xd: np.ndarray, yd: np.ndarray, d: tuple[float, ...], model: str, iterations: int = 20):
    """Invert the Brown-Conrady (plumb_bob) / rational polynomial model by fixed-point iteration."""
    k1, k2, p1, p2, k3 = d[:5]
    k4, k5, k6 = d[5:8] if model == "rational_polynomial" else (0.0, 0.0, 0.0)
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = (1 + ((k3 * r2 + k2) * r2 + k1) * r2) / (1 + ((k6 * r2 + k5) * r2 + k4) * r2)
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return x, y


def distort(x: np.ndarray, y: np.ndarray, d: Sequence[float], model: str = "plumb_bob"):
    """Forward distortion of normalised coordinates (for tests and synthetic data)."""
    k1, k2, p1, p2, k3 = list(d[:5])
    k4, k5, k6 = list(d[5:8]) if model == "rational_polynomial" else (0.0, 0.0, 0.0)
    r2 = x * x + y * y
    radial = (1 + ((k3 * r2 + k2) * r2 + k1) * r2) / (1 + ((k6 * r2 + k5) * r2 + k4) * r2)
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def _buffer(data, width: int, height: int, step: int, bytes_per_pixel: int, what: str) -> np.ndarray:
    """(H, step) uint8 view of a raw image buffer, after checking every size field."""
    try:
        width, height, step = int(width), int(height), int(step)
    except (TypeError, ValueError, OverflowError):
        raise ImageError(f"{what}: width/height/step are not integers") from None
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise ImageError(f"{what}: size {width}x{height} px is empty or larger than {MAX_IMAGE_SIDE}")
    if step < width * bytes_per_pixel:
        raise ImageError(f"{what}: step {step} B < width {width} x {bytes_per_pixel} B per pixel")
    try:
        if isinstance(data, np.ndarray):
            buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        else:
            buf = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageError(f"{what}: data is not a byte buffer ({exc})") from None
    if buf.size < step * height:
        raise ImageError(f"{what}: data has {buf.size} B, expected step {step} x height {height} = {step * height} B")
    return buf[: step * height].reshape(height, step)


def decode_depth(data, encoding: str, width: int, height: int, step: int, is_bigendian: bool = False,
                 depth_scale_16u: float = 1e-3) -> np.ndarray:
    """Raw ``sensor_msgs/Image`` fields -> (H, W) float32 depth [m], NaN where invalid (0, NaN, inf).

    Args:
        data: The image bytes (bytes, bytearray, memoryview, array.array or uint8 ndarray).
        encoding: ``16UC1``/``mono16`` (integer millimetres times ``depth_scale_16u`` [m]) or ``32FC1`` [m].
        width, height, step: Image size [px] and row stride [bytes].
        is_bigendian: Byte order of the data.
        depth_scale_16u: Metres per unit of a 16-bit depth image.

    Raises:
        EncodingError: Any other encoding.
        ImageError: Sizes and data length disagree.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise EncodingError(f"depth encoding {encoding!r} is not supported; use one of {sorted(DEPTH_ENCODINGS)}")
    dtype, scale = DEPTH_ENCODINGS[encoding]
    if dtype is np.uint16:
        scale = depth_scale_16u
    itemsize = np.dtype(dtype).itemsize
    rows = _buffer(data, width, height, step, itemsize, f"depth image ({encoding})")
    pixels = np.ascontiguousarray(rows[:, : int(width) * itemsize]).view(np.dtype(dtype).newbyteorder(">" if is_bigendian else "<"))
    return depth_to_metres(pixels, scale)


def depth_to_metres(depth: np.ndarray, scale: float | None = None) -> np.ndarray:
    """(H, W) depth times ``scale`` -> float32 [m], with 0/NaN/inf/negative -> NaN.

    ``scale`` defaults to the ROS conventions: 1e-3 (millimetres) for integer arrays (16UC1),
    1 (metres) for floating-point arrays (32FC1).
    """
    d = np.asarray(depth)
    if scale is None:
        scale = 1e-3 if np.issubdtype(d.dtype, np.integer) else 1.0
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[:, :, 0]
    if d.ndim != 2 or d.size == 0:
        raise ImageError(f"depth image must be a non-empty (H, W) array, got shape {d.shape}")
    if not (np.issubdtype(d.dtype, np.number) and not np.issubdtype(d.dtype, np.complexfloating)):
        raise EncodingError(f"depth array dtype {d.dtype} is not numeric")
    out = d.astype(np.float32) * np.float32(scale)
    with np.errstate(invalid="ignore"):
        out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def decode_color(data, encoding: str, width: int, height: int, step: int) -> np.ndarray:
    """Raw ``sensor_msgs/Image`` fields -> (H, W, 3) uint8 RGB. Encodings: rgb8, bgr8, rgba8, bgra8, mono8."""
    if encoding not in COLOR_ENCODINGS:
        raise EncodingError(f"colour encoding {encoding!r} is not supported; use one of {sorted(COLOR_ENCODINGS)}")
    channels, order = COLOR_ENCODINGS[encoding]
    rows = _buffer(data, width, height, step, channels, f"colour image ({encoding})")
    pixels = rows[:, : int(width) * channels].reshape(int(height), int(width), channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def check_sizes(depth: np.ndarray, camera: CameraModel, rgb: np.ndarray | None = None) -> None:
    """Raise :class:`SizeMismatchError` unless the depth image matches the camera info and the colour
    image has the same aspect ratio (colour may be a scaled copy of the depth grid)."""
    if depth.shape[:2] != (camera.height, camera.width):
        raise SizeMismatchError(f"depth image is {depth.shape[1]}x{depth.shape[0]} px but camera info says "
                                f"{camera.width}x{camera.height}")
    if rgb is not None:
        h, w = rgb.shape[:2]
        if h == 0 or w == 0 or abs(w / h - camera.width / camera.height) > 0.01:
            raise SizeMismatchError(f"colour image {w}x{h} px is not registered to the {camera.width}x{camera.height} "
                                    "depth image (different aspect ratio)")


def backproject(depth: np.ndarray, camera: CameraModel, min_depth: float, max_depth: float):
    """Valid pixels -> optical-frame points.

    Args:
        depth: (H, W) float32 [m], NaN invalid (see :func:`depth_to_metres`).
        camera: Matching camera model (:func:`check_sizes`).
        min_depth, max_depth: Valid range along the optical axis [m].

    Returns:
        (points (N, 3) float32 [m] in the optical frame, flat pixel indices (N,) int64 = v * W + u).
    """
    with np.errstate(invalid="ignore"):
        valid = (depth >= min_depth) & (depth <= max_depth)
    flat = np.flatnonzero(valid)
    z = depth.ravel()[flat]
    xy = camera.rays().reshape(-1, 2)[flat]
    points = np.empty((flat.size, 3), dtype=np.float32)
    points[:, :2] = xy * z[:, None]
    points[:, 2] = z
    return points, flat
