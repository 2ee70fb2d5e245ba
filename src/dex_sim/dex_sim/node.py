"""The simulation node: a thin ROS 2 adapter over :class:`dex_sim.env.SimEnv`.

Run::

    python -m dex_sim.node --ros-args -p robot:=ur5e_leap -p num_objects:=3 -p seed:=0

Publishes (names from the robot YAML's driver sections):

* ``/joint_states`` (sensor_msgs/JointState): arm + hand, drivers' names and conventions
  (LEAP: ``"0"``..``"15"`` with the ``+pi`` offset; Shadow: the 24 joint names).
* the hand driver's state topic (``/leap_hand/joint_states`` or ``/shadow_hand/joint_states``).
* ``/camera/color/image_raw`` (rgb8), ``/camera/depth/image_rect_raw`` (``depth_encoding``:
  16UC1 [mm], 0 invalid, or 32FC1 [m], NaN invalid; registered to colour), optionally 32FC1 on
  ``depth_float_topic``; ``/camera/color/camera_info`` and ``/camera/depth/camera_info``. Frame:
  ``camera_color_optical_frame``; its pose in ``base_link`` is in the calibration YAML
  (``calibration_out`` parameter; sample ``config/calibration/sim_camera.yaml``).
* EVALUATION ONLY: ``/sim/ground_truth/object_poses`` (geometry_msgs/PoseArray, frame base_link)
  and ``/sim/ground_truth/object_names`` (std_msgs/String, JSON list in the same order). No node
  of the grasping stack may subscribe to these.
* optionally ``/sim/clock`` (rosgraph_msgs/Clock, the simulation time).

Subscribes: the arm driver topic (``/scaled_joint_trajectory_controller/joint_trajectory``,
trajectory_msgs/JointTrajectory) and the hand driver topic (LEAP ``/cmd_leap`` JointState;
Shadow ``/shadow_hand/joint_trajectory`` JointTrajectory). A malformed command is rejected with a
logged reason (``CommandRejected``); the node keeps running.

Services: ``/sim/reset_episode`` (dex_interfaces/srv/ResetEpisode), ``/sim/spawn_object``
(dex_interfaces/srv/SpawnObject).

Physics runs paced to the wall clock (``real_time_factor``); the camera renders in its own thread
from state snapshots, so rendering never stalls physics or joint states.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import rclpy
from geometry_msgs.msg import Pose, PoseArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo as CameraInfoMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from dex_description.compose import default_physics
from dex_description.node_main import build_node
from dex_sim.commands import CommandRejected, JointStateCommand, JointTrajectoryCommand, TrajectoryPoint
from dex_sim.env import SimEnv, SnapshotRenderer, default_config
from dex_sim.render import depth_to_mm

PARAMS = {
    "robot": "ur5e_leap",
    "object_set": "builtin",
    "num_objects": 1,
    "seed": 0,
    "physics_rate_hz": 500.0,
    "joint_states_rate_hz": 100.0,
    "camera_rate_hz": 15.0,
    "camera_enabled": True,
    "ground_truth_rate_hz": 10.0,
    "real_time_factor": 1.0,
    "depth_encoding": "16UC1",
    "depth_float_topic": "",
    "color_topic": "/camera/color/image_raw",
    "depth_topic": "/camera/depth/image_rect_raw",
    "color_info_topic": "/camera/color/camera_info",
    "depth_info_topic": "/camera/depth/camera_info",
    "joint_states_topic": "/joint_states",
    "ground_truth_topic": "/sim/ground_truth/object_poses",
    "ground_truth_names_topic": "/sim/ground_truth/object_names",
    "publish_clock": False,
    "calibration_out": "",
}


def trajectory_from_msg(msg: JointTrajectory) -> JointTrajectoryCommand:
    """trajectory_msgs/JointTrajectory -> plain command (no checks; the env validates)."""
    pts = []
    for p in msg.points:
        t = float(p.time_from_start.sec) + 1e-9 * float(p.time_from_start.nanosec)
        pts.append(TrajectoryPoint(list(p.positions), t, list(p.velocities) or None, list(p.accelerations) or None))
    return JointTrajectoryCommand(list(msg.joint_names), pts)


def joint_state_command_from_msg(msg: JointState) -> JointStateCommand:
    return JointStateCommand(list(msg.position), list(msg.name))


class SimNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("dex_sim")
        for name, default in PARAMS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMS}
        self.p = p
        if p["depth_encoding"] not in ("16UC1", "32FC1"):
            raise ValueError(f"parameter depth_encoding must be 16UC1 or 32FC1, got {p['depth_encoding']!r}")
        cfg = default_config()
        cfg = replace(cfg, robot=p["robot"], object_set=p["object_set"], num_objects=int(p["num_objects"]),
                      physics=replace(default_physics(), timestep=1.0 / float(p["physics_rate_hz"])))
        self.env = SimEnv(cfg)
        self.lock = threading.RLock()
        self.env.reset(seed=int(p["seed"]))
        rcfg = self.env.robot.cfg
        self.base_frame = rcfg.base_frame
        if p["calibration_out"]:
            path = self.env.write_calibration(p["calibration_out"])
            self.get_logger().info(f"camera calibration written to {path}")

        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        images = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_js = self.create_publisher(JointState, p["joint_states_topic"], reliable)
        self.pub_hand = self.create_publisher(JointState, rcfg.hand.driver.state_topic, reliable)
        self.pub_rgb = self.create_publisher(Image, p["color_topic"], images)
        self.pub_depth = self.create_publisher(Image, p["depth_topic"], images)
        self.pub_depth_f = self.create_publisher(Image, p["depth_float_topic"], images) if p["depth_float_topic"] else None
        self.pub_rgb_info = self.create_publisher(CameraInfoMsg, p["color_info_topic"], reliable)
        self.pub_depth_info = self.create_publisher(CameraInfoMsg, p["depth_info_topic"], reliable)
        self.pub_gt = self.create_publisher(PoseArray, p["ground_truth_topic"], reliable)
        self.pub_gt_names = self.create_publisher(String, p["ground_truth_names_topic"], reliable)
        self.pub_clock = None
        if p["publish_clock"]:
            from rosgraph_msgs.msg import Clock

            self.pub_clock = self.create_publisher(Clock, "/sim/clock", reliable)
        self.create_subscription(JointTrajectory, rcfg.arm.driver.command_topic, self._on_arm, reliable)
        hand_type = JointState if self.env.hand_channel.kind == "joint_state" else JointTrajectory
        self.create_subscription(hand_type, rcfg.hand.driver.command_topic, self._on_hand, reliable)

        from dex_interfaces.srv import ResetEpisode, SpawnObject

        self.create_service(ResetEpisode, "/sim/reset_episode", self._on_reset)
        self.create_service(SpawnObject, "/sim/spawn_object", self._on_spawn)

        self.rejected = 0
        self._sync_clock()
        self._next_js = 0.0
        self._next_gt = 0.0
        self._behind_warned = False
        self.create_timer(0.004, self._tick)  # physics catches up to the wall clock in 4 ms slices
        self._stop = threading.Event()
        self._publish_failures = 0
        self._camera_thread = None
        if p["camera_enabled"] and p["camera_rate_hz"] > 0:
            self._camera_thread = threading.Thread(target=self._camera_loop, name="dex_sim_camera", daemon=True)
            self._camera_thread.start()
        self.get_logger().info(
            f"dex_sim ready: robot {rcfg.name}, objects {self.env.object_names}, arm commands on "
            f"{rcfg.arm.driver.command_topic}, hand commands on {rcfg.hand.driver.command_topic} "
            f"({hand_type.__name__}), camera {'on' if self._camera_thread else 'off'}")

    # ------------------------------------------------------------------ timing

    def _sync_clock(self) -> None:
        self._wall0 = time.monotonic()
        self._sim0 = self.env.time

    def _tick(self) -> None:
        p = self.p
        with self.lock:
            target = self._sim0 + (time.monotonic() - self._wall0) * float(p["real_time_factor"])
            lag = target - self.env.time
            if lag > 0.25:  # more than 250 ms behind: drop the backlog rather than spiral
                if not self._behind_warned:
                    self.get_logger().warning(f"physics is {lag:.2f} s behind real time; skipping ahead (machine overloaded?)")
                    self._behind_warned = True
                self._sync_clock()
                lag = 0.05
            steps = int(lag / self.env.dt)
            if steps > 0:
                self.env.step(steps)
            now = time.monotonic()
            try:
                if now >= self._next_js:
                    self._next_js = max(self._next_js + 1.0 / p["joint_states_rate_hz"], now)
                    self._publish_joint_states()
                if now >= self._next_gt and p["ground_truth_rate_hz"] > 0:
                    self._next_gt = max(self._next_gt + 1.0 / p["ground_truth_rate_hz"], now)
                    self._publish_ground_truth()
            except Exception as exc:  # noqa: BLE001 - a failed publish (DDS under load) must not kill the node
                if not rclpy.ok():
                    return
                self._publish_failures += 1
                if self._publish_failures in (1, 10, 100) or self._publish_failures % 1000 == 0:
                    self.get_logger().warning(f"publish failed ({self._publish_failures} so far): "
                                              f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ publishing

    def _js_msg(self, sample, stamp) -> JointState:
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = list(sample.names)
        msg.position = sample.position.tolist()
        msg.velocity = sample.velocity.tolist()
        msg.effort = sample.effort.tolist()
        return msg

    def _publish_joint_states(self) -> None:
        stamp = self.get_clock().now().to_msg()
        self.pub_js.publish(self._js_msg(self.env.joint_state(), stamp))
        self.pub_hand.publish(self._js_msg(self.env.hand_state(), stamp))
        if self.pub_clock is not None:
            from rosgraph_msgs.msg import Clock

            c = Clock()
            c.clock.sec = int(self.env.time)
            c.clock.nanosec = int((self.env.time % 1.0) * 1e9)
            self.pub_clock.publish(c)

    def _publish_ground_truth(self) -> None:
        poses = self.env.object_poses()
        msg = PoseArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.base_frame
        from dex_sim.env import _rot_to_quat

        for T in poses.values():
            q = _rot_to_quat(T[:3, :3])
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
            pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (float(v) for v in q)
            msg.poses.append(pose)
        self.pub_gt.publish(msg)
        self.pub_gt_names.publish(String(data=json.dumps(list(poses))))

    def _camera_info_msg(self, stamp) -> CameraInfoMsg:
        info = self.env.camera_info()
        msg = CameraInfoMsg()
        msg.header.stamp = stamp
        msg.header.frame_id = info.frame_id
        msg.width, msg.height = int(info.width), int(info.height)
        msg.distortion_model = "plumb_bob"
        msg.d = [0.0] * 5
        msg.k = [float(v) for v in info.K.reshape(-1)]
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        K = info.K
        msg.p = [float(K[0, 0]), 0.0, float(K[0, 2]), 0.0, 0.0, float(K[1, 1]), float(K[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0]
        return msg

    def _image(self, arr: np.ndarray, encoding: str, stamp, frame: str) -> Image:
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = frame
        msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
        msg.encoding = encoding
        msg.is_bigendian = 0
        msg.step = int(arr.strides[0])
        msg.data = np.ascontiguousarray(arr).tobytes()
        return msg

    def _camera_loop(self) -> None:
        renderer = SnapshotRenderer(self.env.cfg.scene.camera)
        period = 1.0 / float(self.p["camera_rate_hz"])
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now < next_t:
                    self._stop.wait(next_t - now)
                    continue
                next_t = max(next_t + period, now)
                with self.lock:
                    snap = self.env.snapshot()
                    stamp = self.get_clock().now().to_msg()
                try:
                    frame = renderer.render(snap)
                    info = self._camera_info_msg(stamp)
                    self.pub_rgb.publish(self._image(frame.rgb, "rgb8", stamp, info.header.frame_id))
                    if self.p["depth_encoding"] == "16UC1":
                        depth = self._image(depth_to_mm(frame.depth), "16UC1", stamp, info.header.frame_id)
                    else:
                        depth = self._image(frame.depth, "32FC1", stamp, info.header.frame_id)
                    self.pub_depth.publish(depth)
                    if self.pub_depth_f is not None:
                        self.pub_depth_f.publish(self._image(frame.depth, "32FC1", stamp, info.header.frame_id))
                    self.pub_rgb_info.publish(info)
                    self.pub_depth_info.publish(info)
                except Exception as exc:  # a render/publish failure must not kill the node
                    if self._stop.is_set() or not rclpy.ok():
                        break
                    self.get_logger().error(f"camera frame failed: {type(exc).__name__}: {exc}")
        finally:
            renderer.close()

    # ------------------------------------------------------------------ commands and services

    def _command(self, what: str, fn, msg) -> None:
        try:
            with self.lock:
                fn(msg)
        except CommandRejected as exc:
            self.rejected += 1
            self.get_logger().warning(f"rejected {what} command: {exc.reason}")
        except Exception as exc:  # never die on a message
            self.rejected += 1
            self.get_logger().error(f"rejected {what} command ({type(exc).__name__}): {exc}")

    def _on_arm(self, msg: JointTrajectory) -> None:
        self._command("arm", lambda m: self.env.command_arm(trajectory_from_msg(m)), msg)

    def _on_hand(self, msg) -> None:
        if isinstance(msg, JointState):
            self._command("hand", lambda m: self.env.command_hand(joint_state_command_from_msg(m)), msg)
        else:
            self._command("hand", lambda m: self.env.command_hand(trajectory_from_msg(m)), msg)

    def _on_reset(self, request, response):
        try:
            with self.lock:
                obs = self.env.reset(seed=int(request.seed), object_set=request.object_set or None,
                                     object_names=list(request.object_names) or None,
                                     num_objects=int(request.num_objects) if request.num_objects > 0 else None)
                self._sync_clock()
            response.success = True
            response.object_names = list(obs.object_names)
            response.message = f"reset with seed {request.seed}: {', '.join(obs.object_names) or 'no objects'}"
            self.get_logger().info(response.message)
        except Exception as exc:
            response.success = False
            response.message = f"reset failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(response.message)
        return response

    def _on_spawn(self, request, response):
        try:
            o, q = request.pose.position, request.pose.orientation
            with self.lock:
                name = self.env.spawn_object(request.object_name, object_set=request.object_set or None,
                                             pos=np.array([o.x, o.y, o.z]), quat=np.array([q.w, q.x, q.y, q.z]))
                self._sync_clock()
            response.success = True
            response.message = f"spawned {name}"
            self.get_logger().info(response.message)
        except Exception as exc:
            response.success = False
            response.message = f"spawn failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(response.message)
        return response

    def shutdown(self) -> None:
        self._stop.set()
        if self._camera_thread is not None:
            self._camera_thread.join(timeout=5.0)
        with self.lock:
            self.env.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv if argv is None else argv
    rclpy.init(args=args)
    node = None
    try:
        node = build_node(SimNode)
        if node is None:  # stopped while it was being built
            return 0
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
