"""Conversions between ROS messages and the ROS-free API (imported by the node only).

Clouds: ``sensor_msgs/PointCloud2`` with float32 or float64 fields ``x y z normal_x normal_y
normal_z`` (any order, padding, endianness). Proposals: :class:`dex_proposal.api.Proposal` ->
``dex_interfaces/GraspProposal`` (wrist pose of the hand root in the header frame, joint positions
in ``hand.joints`` order). Markers: fingertips and hand skeleton of the top proposals, namespace
``proposals``.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point, Pose
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from dex_interfaces.msg import GraspProposal, GraspProposalArray, HandState

from dex_proposal.errors import ProposalError

XYZ_NORMAL = ("x", "y", "z", "normal_x", "normal_y", "normal_z")
_TYPES = {PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


class CloudFormatError(ProposalError):
    """A PointCloud2 lacks the needed fields or its data is truncated."""


def cloud_from_msg(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """``(points (N, 3), normals (N, 3))`` float64 from a PointCloud2 (see module doc).

    Raises:
        CloudFormatError: Missing ``x y z`` / normal fields, unsupported field type, short data.
    """
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in XYZ_NORMAL if n not in fields]
    if missing:
        raise CloudFormatError(f"PointCloud2 lacks field(s) {missing}; has {sorted(fields)}")
    n = int(msg.width) * int(msg.height)
    if n == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    step = int(msg.point_step)
    if step <= 0 or raw.size < n * step:
        raise CloudFormatError(f"PointCloud2 data has {raw.size} B, expected {n} points x {step} B")
    rows = raw[: n * step].reshape(n, step)
    cols = []
    for name in XYZ_NORMAL:
        f = fields[name]
        if f.datatype not in _TYPES:
            raise CloudFormatError(f"field '{name}' has datatype {f.datatype}; need FLOAT32 or FLOAT64")
        code = (">" if msg.is_bigendian else "<") + _TYPES[f.datatype]
        size = np.dtype(code).itemsize
        if f.offset + size > step:
            raise CloudFormatError(f"field '{name}' at offset {f.offset} overruns point_step {step}")
        cols.append(rows[:, f.offset:f.offset + size].copy().view(code)[:, 0].astype(np.float64))
    arr = np.stack(cols, 1)
    return arr[:, :3], arr[:, 3:]


def cloud_to_msg(header: Header, points: np.ndarray, normals: np.ndarray) -> PointCloud2:
    """(N, 3) points + normals -> little-endian float32 PointCloud2 (for tests and tools)."""
    cols = np.ascontiguousarray(np.hstack([np.asarray(points).reshape(-1, 3), np.asarray(normals).reshape(-1, 3)]), "<f4")
    msg = PointCloud2()
    msg.header = header
    msg.height = 1
    msg.width = int(cols.shape[0])
    msg.fields = [PointField(name=k, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, k in enumerate(XYZ_NORMAL)]
    msg.is_bigendian = False
    msg.point_step = 24
    msg.row_step = 24 * msg.width
    msg.is_dense = bool(np.isfinite(cols).all())
    msg.data = cols.tobytes()
    return msg


def _quat(rot: np.ndarray) -> np.ndarray:
    import torch

    from dex_description.rotations import matrix_to_quat

    return matrix_to_quat(torch.as_tensor(rot, dtype=torch.float64)).numpy()


def pose_msg(world_T: np.ndarray) -> Pose:
    """(4, 4) -> geometry_msgs/Pose (quaternion w, x, y, z -> msg x, y, z, w)."""
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in world_T[:3, 3])
    w, x, y, z = _quat(world_T[:3, :3])
    p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = float(w), float(x), float(y), float(z)
    return p


def hand_state_msg(conf) -> HandState:
    s = HandState()
    s.wrist_pose = pose_msg(conf.world_T_root)
    s.joint_positions = [float(v) for v in conf.joints]
    return s


def proposal_array_msg(header: Header, result, hand_name: str, wrist_frame: str, joint_names, object_id: str = "",
                       method: str = "bodex") -> GraspProposalArray:
    """:class:`~dex_proposal.api.ProposalResult` -> GraspProposalArray (best first)."""
    out = GraspProposalArray()
    out.header = header
    out.object_id = object_id
    for i, p in enumerate(result.proposals):
        g = GraspProposal()
        g.id = f"{method}-{i:04d}"
        g.hand_name = hand_name
        g.method = method
        g.wrist_frame = wrist_frame
        g.joint_names = list(joint_names)
        g.pregrasp = hand_state_msg(p.pregrasp)
        g.grasp = hand_state_msg(p.grasp)
        g.squeeze = hand_state_msg(p.squeeze)
        g.score = float(p.score)
        g.energy = float(p.energy)
        out.proposals.append(g)
    return out


def _color(i: int, n: int, alpha: float = 0.9) -> ColorRGBA:
    c = ColorRGBA()
    t = i / max(n - 1, 1)
    c.r, c.g, c.b, c.a = float(1 - t), float(0.3 + 0.6 * t), 0.2, alpha
    return c


def markers_msg(header: Header, skeletons: list[tuple[np.ndarray, np.ndarray]], clear: bool = True) -> MarkerArray:
    """Fingertips (SPHERE_LIST) and hand skeleton (LINE_LIST) per proposal, namespace ``proposals``.

    Args:
        skeletons: per proposal ``(pads (m, 3), segments (k, 2, 3))`` [m] at the grasp pose.
    """
    arr = MarkerArray()
    if clear:
        d = Marker()
        d.header = header
        d.ns = "proposals"
        d.action = Marker.DELETEALL
        arr.markers.append(d)
    n = len(skeletons)
    for i, (pads, segs) in enumerate(skeletons):
        tips = Marker()
        tips.header = header
        tips.ns = "proposals"
        tips.id = 2 * i
        tips.type = Marker.SPHERE_LIST
        tips.action = Marker.ADD
        tips.pose.orientation.w = 1.0
        tips.scale.x = tips.scale.y = tips.scale.z = 0.012
        tips.color = _color(i, n)
        tips.points = [Point(x=float(a), y=float(b), z=float(c)) for a, b, c in pads]
        arr.markers.append(tips)
        bones = Marker()
        bones.header = header
        bones.ns = "proposals"
        bones.id = 2 * i + 1
        bones.type = Marker.LINE_LIST
        bones.action = Marker.ADD
        bones.pose.orientation.w = 1.0
        bones.scale.x = 0.004
        bones.color = _color(i, n, 0.6)
        bones.points = [Point(x=float(a), y=float(b), z=float(c)) for s in segs for a, b, c in s]
        arr.markers.append(bones)
    return arr
