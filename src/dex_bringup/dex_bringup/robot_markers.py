"""``robot_markers`` node: the robot as a MarkerArray on ``/dex/robot_markers`` (frame ``base_link``),
from the joint states of its drivers, so RViz shows it without a URDF or TF.

Subscribes the arm and hand state topics named in the robot YAML (``/joint_states``, and e.g.
``/leap_hand/joint_states`` on the real LEAP), converts driver names/values to the model's
(:mod:`dex_description.drivers`) and poses the collision shapes (:mod:`dex_description.shapes`).
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from geometry_msgs.msg import Point, Pose
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from visualization_msgs.msg import Marker, MarkerArray

    from dex_description.compose import load_robot
    from dex_description.drivers import DriverMappingError, arm_map, hand_state_map
    from dex_description.errors import DescriptionError
    from dex_description.node_main import build_node
    from dex_description.shapes import ShapePoser, marker_primitives

    class RobotMarkers(Node):
        def __init__(self) -> None:
            super().__init__("robot_markers")
            self.declare_parameter("robot", "ur5e_leap")
            self.declare_parameter("rate_hz", 10.0)
            self.declare_parameter("frame_id", "base_link")
            robot = load_robot(self.get_parameter("robot").value, check=False)
            self.poser = ShapePoser(robot)
            self.maps = [arm_map(robot.cfg), hand_state_map(robot.cfg.hand)]
            self.q = {n: 0.0 for n in self.poser.joint_names}
            for j, v in zip(robot.cfg.arm.joints, robot.cfg.arm.named_poses["home"]):
                self.q[j] = float(v)
            self.pub = self.create_publisher(MarkerArray, "/dex/robot_markers", 1)
            topics = {robot.cfg.arm.driver.state_topic, robot.cfg.hand.driver.state_topic}
            self.subs = [self.create_subscription(JointState, t, self.on_state, 10) for t in sorted(topics)]
            self.timer = self.create_timer(1.0 / float(self.get_parameter("rate_hz").value), self.publish)
            self.frame = self.get_parameter("frame_id").value

        def on_state(self, msg: JointState) -> None:
            for m in self.maps:
                names = [n for n in msg.name if n in m.names]
                if not names:
                    continue
                idx = [list(msg.name).index(n) for n in names]
                try:
                    self.q.update(m.from_driver(names, [msg.position[i] for i in idx]))
                except (DriverMappingError, IndexError) as exc:
                    self.get_logger().warn(f"ignoring joint state: {exc}", throttle_duration_sec=5.0)

        def publish(self) -> None:
            if self.pub.get_subscription_count() == 0:  # nobody looks (headless): do not pose the shapes
                return
            q = np.array([self.q[n] for n in self.poser.joint_names])
            out = MarkerArray()
            stamp = self.get_clock().now().to_msg()
            types = {"sphere": Marker.SPHERE, "cube": Marker.CUBE, "cylinder": Marker.CYLINDER,
                     "triangles": Marker.TRIANGLE_LIST}
            for i, (shape, world_T_shape) in enumerate(zip(self.poser.shapes, self.poser.world_poses(q))):
                for k, (kind, pos, quat, scale) in enumerate(marker_primitives(shape, world_T_shape)):
                    m = Marker()
                    m.header.frame_id = self.frame
                    m.header.stamp = stamp
                    m.ns, m.id, m.type, m.action = "robot", 4 * i + k, types[kind], Marker.ADD
                    m.pose = Pose()
                    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(x) for x in pos)
                    m.pose.orientation.w, m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z = (float(x) for x in quat)
                    m.scale.x, m.scale.y, m.scale.z = (float(x) for x in scale)
                    m.color.r, m.color.g, m.color.b, m.color.a = (float(c) for c in shape.rgba)
                    if kind == "triangles":
                        m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in shape.triangles.reshape(-1, 3)]
                    out.markers.append(m)
            self.pub.publish(out)

    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = build_node(RobotMarkers)
    except DescriptionError as exc:
        print(f"robot_markers: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    if node is None:  # stopped while it was being built
        return 0
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C, or SIGINT/SIGTERM from the launcher
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
