"""ROS message <-> numpy conversions for the perception node (needs rclpy's message packages).

``sensor_msgs_py`` is not available as a wheel; PointCloud2 packing is a few lines of numpy.
Clouds are little-endian float32 with fields ``x y z`` (scene) or ``x y z normal_x normal_y
normal_z`` (object; PCL's ``PointNormal`` names, 24-byte points), ``height = 1``, dense.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point32, PolygonStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from dex_perception.camera import CameraModel, decode_color, decode_depth
from dex_perception.errors import ImageError

XYZ = ("x", "y", "z")
XYZ_NORMAL = ("x", "y", "z", "normal_x", "normal_y", "normal_z")


def stamp_ns(header: Header) -> int:
    """Header stamp as integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def depth_from_msg(msg: Image) -> np.ndarray:
    """``sensor_msgs/Image`` (16UC1/mono16 [mm] or 32FC1 [m]) -> (H, W) float32 [m], NaN invalid."""
    return decode_depth(msg.data, msg.encoding, msg.width, msg.height, msg.step, bool(msg.is_bigendian))


def color_from_msg(msg: Image) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB."""
    return decode_color(msg.data, msg.encoding, msg.width, msg.height, msg.step)


def camera_from_msg(msg: CameraInfo) -> CameraModel:
    """``sensor_msgs/CameraInfo`` -> validated :class:`CameraModel` (see ``CameraModel.from_camera_info``)."""
    return CameraModel.from_camera_info(msg.width, msg.height, list(msg.k), list(msg.d), msg.distortion_model,
                                        msg.header.frame_id)


def cloud_msg(header: Header, points: np.ndarray, normals: np.ndarray | None = None) -> PointCloud2:
    """(N, 3) points [m] (+ (N, 3) normals) -> PointCloud2 (float32 fields, see the module docstring)."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    names = XYZ if normals is None else XYZ_NORMAL
    cols = pts if normals is None else np.hstack([pts, np.asarray(normals, dtype=np.float32).reshape(-1, 3)])
    cols = np.ascontiguousarray(cols, dtype="<f4")
    msg = PointCloud2()
    msg.header = header
    msg.height = 1
    msg.width = int(cols.shape[0])
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate(names)]
    msg.is_bigendian = False
    msg.point_step = 4 * len(names)
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = bool(np.all(np.isfinite(cols)))
    msg.data = cols.tobytes()
    return msg


def cloud_arrays(msg: PointCloud2, names: tuple[str, ...] = XYZ_NORMAL) -> np.ndarray:
    """(N, len(names)) float32 of the named float32 fields of a PointCloud2 (any field order/padding)."""
    offsets = {f.name: f.offset for f in msg.fields if f.datatype == PointField.FLOAT32}
    missing = [n for n in names if n not in offsets]
    if missing:
        raise ImageError(f"PointCloud2 lacks float32 field(s) {missing}; has {[f.name for f in msg.fields]}")
    n = int(msg.width) * int(msg.height)
    if n == 0:
        return np.zeros((0, len(names)), np.float32)
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if raw.size < n * msg.point_step:
        raise ImageError(f"PointCloud2 data has {raw.size} B, expected {n * msg.point_step}")
    rows = raw[: n * msg.point_step].reshape(n, msg.point_step)
    dtype = np.dtype(">f4" if msg.is_bigendian else "<f4")
    return np.stack([rows[:, offsets[k]:offsets[k] + 4].copy().view(dtype)[:, 0] for k in names], axis=1).astype(np.float32)


def polygon_msg(header: Header, polygon: np.ndarray) -> PolygonStamped:
    """(K, 3) vertices [m] -> PolygonStamped."""
    msg = PolygonStamped()
    msg.header = header
    msg.polygon.points = [Point32(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in np.asarray(polygon)]
    return msg


def image_msg(header: Header, array: np.ndarray, encoding: str) -> Image:
    """(H, W[, C]) array -> Image (little endian); for tests and tools."""
    arr = np.ascontiguousarray(array)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = False
    msg.step = int(arr.strides[0])
    msg.data = arr.tobytes()
    return msg


def camera_info_msg(header: Header, camera: CameraModel) -> CameraInfo:
    """CameraModel -> CameraInfo (P = [K | 0]); for tests and tools."""
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = camera.width, camera.height
    msg.k = [float(v) for v in camera.K.ravel()]
    msg.distortion_model = camera.distortion_model or "plumb_bob"
    msg.d = list(camera.D) if camera.D else [0.0] * 5
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    p = np.zeros((3, 4))
    p[:, :3] = camera.K
    msg.p = [float(v) for v in p.ravel()]
    return msg
