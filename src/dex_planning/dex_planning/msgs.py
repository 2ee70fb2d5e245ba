"""ROS message <-> planner conversions for the planning node (needs rclpy's message packages).

* requests: ``GraspProposalArray`` -> :class:`~dex_planning.interface.ProposalTarget` (or the
  conversion error, which the selection loop turns into an ``invalid`` rejection),
  ``sensor_msgs/JointState`` -> arm and hand joint vectors (model order; names of the model, of
  the arm driver or of the hand driver's state vector, converted by :mod:`dex_description.drivers`),
  ``PointCloud2`` -> (N, 3) points (via :func:`dex_perception.msgs.cloud_arrays`);
* results: :class:`~dex_planning.interface.Trajectory` -> ``trajectory_msgs/JointTrajectory`` in the
  drivers' joint names and conventions (UR: the controller's names; hand: the command vector of its
  driver, e.g. Shadow's 20 actuators with ``rh_FFJ0 = FFJ1 + FFJ2``, LEAP's indices with the +pi
  offset), ``Rejection`` -> ``ProposalRejection``, the wrist path -> ``MarkerArray`` (namespace ``plan``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from dex_description.compose import Robot
from dex_description.drivers import DriverMappingError, arm_map, hand_command_map, hand_state_map
from dex_interfaces.msg import GraspProposalArray, ProposalRejection
from dex_planning.errors import InvalidInputError
from dex_planning.interface import ProposalTarget, Rejection, Trajectory
from dex_planning.planner import make_target

NAMESPACE = "plan"
N_MARKERS = 3


def proposals_from_msg(robot: Robot, msg: GraspProposalArray, base_frame: str) -> list[ProposalTarget | Exception]:
    """One entry per proposal: its target, or the :class:`InvalidInputError` saying why it is malformed.

    Raises:
        InvalidInputError: The array's frame is neither empty nor ``base_frame``.
    """
    frame = msg.header.frame_id
    if frame and frame.lstrip("/") != base_frame:
        raise InvalidInputError(f"proposals are in frame '{frame}', expected '{base_frame}' (the robot base frame)")
    out: list[ProposalTarget | Exception] = []
    for i, p in enumerate(msg.proposals):
        try:
            if p.hand_name and p.hand_name != robot.cfg.hand.name:
                raise InvalidInputError(f"proposal for hand '{p.hand_name}', this robot has '{robot.cfg.hand.name}'")
            if p.wrist_frame and p.wrist_frame != robot.cfg.hand.root_body:
                raise InvalidInputError(f"wrist_frame '{p.wrist_frame}' is not the hand root '{robot.cfg.hand.root_body}'")
            pose = p.pregrasp.wrist_pose
            out.append(make_target(robot, p.id or f"proposal-{i}", (pose.position.x, pose.position.y, pose.position.z),
                                   (pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z),
                                   list(p.joint_names), list(p.pregrasp.joint_positions)))
        except InvalidInputError as exc:
            out.append(exc)
    return out


def joint_values(robot: Robot, names: Sequence[str], positions: Sequence[float]) -> tuple[dict[str, float], dict[str, float]]:
    """``({arm joint: value}, {hand joint: value})`` (model names, model values) from a JointState's
    names/positions; names may be model names, arm driver names or hand state-driver names.

    Raises:
        InvalidInputError: Length mismatch, duplicates, NaN/inf, or a name that is none of these.
    """
    names = [str(n) for n in names]
    vals = np.asarray(positions, dtype=np.float64).reshape(-1)
    if len(names) != len(vals):
        raise InvalidInputError(f"joint state has {len(names)} names but {len(vals)} positions")
    if len(set(names)) != len(names):
        raise InvalidInputError("joint state has duplicate names")
    if not np.all(np.isfinite(vals)):
        raise InvalidInputError("joint state positions contain NaN/inf")
    cfg = robot.cfg
    amap, hmap = arm_map(cfg), hand_state_map(cfg.hand)
    arm, hand, rest_n, rest_v = {}, {}, [], []
    for n, v in zip(names, vals):
        if n in cfg.arm.joints:
            arm[n] = float(v)
        elif n in cfg.hand.joints:
            hand[n] = float(v)
        else:
            rest_n.append(n)
            rest_v.append(v)
    if rest_n:
        try:
            a_n = [n for n in rest_n if n in amap.names]
            h_n = [n for n in rest_n if n in hmap.names and n not in amap.names]
            other = [n for n in rest_n if n not in a_n and n not in h_n]
            if other:
                raise InvalidInputError(f"unknown joint name(s) {other}")
            idx = {n: i for i, n in enumerate(rest_n)}
            arm.update(amap.from_driver(a_n, [rest_v[idx[n]] for n in a_n]))
            hand.update(hmap.from_driver(h_n, [rest_v[idx[n]] for n in h_n]))
        except DriverMappingError as exc:
            raise InvalidInputError(str(exc)) from exc
    return arm, hand


def vector(names: Sequence[str], values: dict[str, float], what: str) -> np.ndarray:
    """Values in ``names`` order.

    Raises:
        InvalidInputError: A name is missing.
    """
    missing = [n for n in names if n not in values]
    if missing:
        raise InvalidInputError(f"{what}: no value for {', '.join(missing)}")
    return np.array([values[n] for n in names])


def cloud_points(msg) -> np.ndarray | None:
    """(N, 3) points [m] of a PointCloud2 (``x y z`` float32 fields), or ``None`` for an empty cloud.

    Raises:
        InvalidInputError: The cloud lacks x/y/z float32 fields or its data is short.
    """
    if int(msg.width) * int(msg.height) == 0:
        return None
    from dex_perception.errors import PerceptionError
    from dex_perception.msgs import XYZ, cloud_arrays

    try:
        return cloud_arrays(msg, XYZ).astype(np.float64)
    except PerceptionError as exc:
        raise InvalidInputError(f"obstacle cloud: {exc}") from exc


def _duration(t: float) -> Duration:
    ns = int(round(t * 1e9))  # rounding first: t = 0.9999999999 is 1 s, not 0 s + 10^9 ns wrapped to 0
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def trajectory_msg(names: Sequence[str], traj: Trajectory, header: Header, with_acc: bool = True) -> JointTrajectory:
    """JointTrajectory with positions, velocities (and accelerations) of every sample of ``traj``
    (already in the driver's names/order/values)."""
    msg = JointTrajectory()
    msg.header = header
    msg.joint_names = list(names)
    for k in range(len(traj.t)):
        pt = JointTrajectoryPoint()
        pt.positions = [float(x) for x in traj.q[k]]
        pt.velocities = [float(x) for x in traj.qd[k]]
        if with_acc:
            pt.accelerations = [float(x) for x in traj.qdd[k]]
        pt.time_from_start = _duration(float(traj.t[k]))
        msg.points.append(pt)
    return msg


def arm_trajectory_msg(robot: Robot, traj: Trajectory, header: Header, dt: float) -> JointTrajectory:
    """The arm trajectory resampled every ``dt`` [s], in the arm driver's joint names."""
    amap = arm_map(robot.cfg)
    t = traj.resample(dt)
    conv = Trajectory(amap.names, t.t, amap.to_driver(t.q, robot.cfg.arm.joints),
                      amap.scale * t.qd[:, _order(amap.sources, robot.cfg.arm.joints)],
                      amap.scale * t.qdd[:, _order(amap.sources, robot.cfg.arm.joints)])
    return trajectory_msg(amap.names, conv, header)


def hand_trajectory_msg(robot: Robot, traj: Trajectory, header: Header, dt: float) -> JointTrajectory:
    """The hand trajectory resampled every ``dt`` [s], in the hand driver's command vector
    (actuated drivers get actuator values: coupled joints summed)."""
    hand = robot.cfg.hand
    hmap = hand_command_map(hand)
    t = traj.resample(dt)
    if hand.driver.command_space == "actuated":
        q, qd, qdd = (hand.actuated_from_joints(x) for x in (t.q, t.qd, t.qdd))
        order_names = hand.actuated_names
    else:
        q, qd, qdd = t.q, t.qd, t.qdd
        order_names = hand.joints
    idx = _order(hmap.sources, order_names)
    conv = Trajectory(hmap.names, t.t, hmap.to_driver(q, order_names), hmap.scale * qd[:, idx],
                      hmap.scale * qdd[:, idx])
    return trajectory_msg(hmap.names, conv, header)


def _order(sources: Sequence[str], names: Sequence[str]) -> list[int]:
    index = {n: i for i, n in enumerate(names)}
    return [index[s] for s in sources]


def rejection_msgs(rejections: Sequence[Rejection]) -> list[ProposalRejection]:
    out = []
    for r in rejections:
        m = ProposalRejection()
        m.index = int(r.index)
        m.reason = r.reason
        m.message = r.message
        out.append(m)
    return out


def path_markers(header: Header, path: np.ndarray | None, text: str = "") -> MarkerArray:
    """The planned wrist path: a line strip, a sphere at the pre-grasp, a text label (namespace
    ``plan``, ids 0-2); ``path=None`` deletes them."""
    arr = MarkerArray()
    if path is None:
        for i in range(N_MARKERS):
            m = Marker(header=header, ns=NAMESPACE, id=i, action=Marker.DELETE)
            arr.markers.append(m)
        return arr
    line = Marker(header=header, ns=NAMESPACE, id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
    line.pose.orientation.w = 1.0
    line.scale.x = 0.008
    line.color = ColorRGBA(r=0.1, g=0.8, b=0.2, a=1.0)
    line.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in path]
    goal = Marker(header=header, ns=NAMESPACE, id=1, type=Marker.SPHERE, action=Marker.ADD)
    goal.pose.position = Point(x=float(path[-1][0]), y=float(path[-1][1]), z=float(path[-1][2]))
    goal.pose.orientation.w = 1.0
    goal.scale.x = goal.scale.y = goal.scale.z = 0.03
    goal.color = ColorRGBA(r=0.1, g=0.9, b=0.3, a=0.8)
    label = Marker(header=header, ns=NAMESPACE, id=2, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    label.pose.position = Point(x=float(path[-1][0]), y=float(path[-1][1]), z=float(path[-1][2]) + 0.08)
    label.pose.orientation.w = 1.0
    label.scale.z = 0.03
    label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    label.text = text
    arr.markers.extend([line, goal, label])
    return arr


__all__ = ["proposals_from_msg", "joint_values", "vector", "cloud_points", "arm_trajectory_msg",
           "hand_trajectory_msg", "rejection_msgs", "path_markers"]
