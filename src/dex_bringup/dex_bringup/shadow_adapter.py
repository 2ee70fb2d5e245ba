"""``shadow_adapter`` node: our Shadow Hand topic pair <-> Shadow Robot's own driver.

dexgrasp talks to the Shadow Hand through one topic pair (robot YAML ``hand.driver``, the same
in simulation): commands ``/shadow_hand/joint_trajectory`` (trajectory_msgs/JointTrajectory over
the 20 actuators, ``rh_FFJ0 = rh_FFJ1 + rh_FFJ2``) and states ``/shadow_hand/joint_states``
(sensor_msgs/JointState, the 24 joints). Shadow's driver (sr_interface / sr_config controllers;
for a ROS 1 driver, through ros1_bridge) instead has a finger trajectory controller whose
JointTrajectory names the 22 finger joints (J1 and J2 separately; the driver's J0 transmission
sums them), a wrist trajectory controller (``rh_WRJ1``, ``rh_WRJ2``), and ``/joint_states`` with
the 24 ``rh_`` joints (possibly shared with the arm's joints, which are ignored here).

This node converts both ways with :class:`dex_bringup.adapters.ShadowTranslator`: commands split
each J0 target equally between J1 and J2 (velocities and accelerations likewise) and keep the
header and every point's ``time_from_start``; states are converted back to our state vector and
republished with the driver's header. Bad messages are logged (throttled) and dropped; the node
keeps running.

Parameters (topic defaults follow Shadow's documented controller names):
    ``robot`` (``ur10e_shadow``).
    ``command_topic`` / ``state_topic`` (``""``: the robot YAML's ``hand.driver`` topics).
    ``shadow_command_topic`` (``/rh_trajectory_controller/command``): finger controller.
    ``shadow_wrist_command_topic`` (``/rh_wr_trajectory_controller/command``): wrist
        controller; ``""`` sends the wrist joints to ``shadow_command_topic`` with the fingers
        (one controller for all joints).
    ``shadow_state_topic`` (``/joint_states``).
    ``wrist_joints`` (``[rh_WRJ2, rh_WRJ1]``): joints of the wrist controller.
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dex_bringup.adapters import AdapterError, ShadowTranslator, Trajectory
from dex_bringup.adapter_common import declare_parameters, joint_state_msg, spin_adapter
from dex_description.config import load_robot_config

NODE_NAME = "shadow_adapter"
PARAMETERS: dict[str, Any] = {
    "robot": "ur10e_shadow",
    "command_topic": "",
    "state_topic": "",
    "shadow_command_topic": "/rh_trajectory_controller/command",
    "shadow_wrist_command_topic": "/rh_wr_trajectory_controller/command",
    "shadow_state_topic": "/joint_states",
    "wrist_joints": ["rh_WRJ2", "rh_WRJ1"],
}


def trajectory_from_msg(msg: JointTrajectory) -> Trajectory:
    """trajectory_msgs/JointTrajectory -> validated :class:`Trajectory` (AdapterError if malformed)."""
    points = [{
        "positions": list(p.positions), "velocities": list(p.velocities), "accelerations": list(p.accelerations),
        "time_from_start": float(p.time_from_start.sec) + 1e-9 * float(p.time_from_start.nanosec),
    } for p in msg.points]
    return Trajectory.from_points(list(msg.joint_names), points)


def trajectory_to_msg(traj: Trajectory, like: JointTrajectory) -> JointTrajectory:
    """``traj`` as a message with ``like``'s header and per-point ``time_from_start`` (unchanged times)."""
    out = JointTrajectory()
    out.header = like.header
    out.joint_names = list(traj.joint_names)
    for i, src in enumerate(like.points):
        p = JointTrajectoryPoint()
        p.positions = traj.positions[i].tolist()
        if traj.velocities is not None:
            p.velocities = traj.velocities[i].tolist()
        if traj.accelerations is not None:
            p.accelerations = traj.accelerations[i].tolist()
        p.time_from_start = src.time_from_start
        out.points.append(p)
    return out


class ShadowAdapter(Node):
    """See the module docstring. ``**kwargs`` go to :class:`rclpy.node.Node`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = declare_parameters(self, PARAMETERS)
        hand = load_robot_config(p["robot"]).hand
        if hand.driver.command_type != "trajectory_msgs/msg/JointTrajectory":
            raise AdapterError(f"robot '{p['robot']}': hand commands are {hand.driver.command_type}; "
                               "shadow_adapter needs trajectory_msgs/msg/JointTrajectory")
        wrist_topic = p["shadow_wrist_command_topic"]
        self.translator = ShadowTranslator(hand, p["wrist_joints"] if wrist_topic else ())
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        command_topic = p["command_topic"] or hand.driver.command_topic
        state_topic = p["state_topic"] or hand.driver.state_topic
        self.pub_fingers = self.create_publisher(JointTrajectory, p["shadow_command_topic"], qos)
        self.pub_wrist = self.create_publisher(JointTrajectory, wrist_topic, qos) if wrist_topic else None
        self.pub_state = self.create_publisher(JointState, state_topic, qos)
        self.create_subscription(JointTrajectory, command_topic, self._on_command, qos)
        self.create_subscription(JointState, p["shadow_state_topic"], self._on_state, qos)
        self.commands = self.states = self.rejected = 0
        wrist = f" + {wrist_topic} {list(self.translator.wrist_joints)}" if wrist_topic else ""
        self.get_logger().info(f"{command_topic} -> {p['shadow_command_topic']}{wrist}; "
                               f"{p['shadow_state_topic']} -> {state_topic}")

    def _reject(self, what: str, exc: Exception) -> None:
        self.rejected += 1
        kind = "" if isinstance(exc, AdapterError) else f"{type(exc).__name__}: "
        self.get_logger().warning(f"dropped a {what}: {kind}{exc}", throttle_duration_sec=2.0)

    def _on_command(self, msg: JointTrajectory) -> None:
        try:
            out = self.translator.command_to_shadow(trajectory_from_msg(msg))
        except Exception as exc:  # never die on a message
            self._reject("hand command", exc)
            return
        self.pub_fingers.publish(trajectory_to_msg(out["fingers"], msg))
        if self.pub_wrist is not None and "wrist" in out:
            self.pub_wrist.publish(trajectory_to_msg(out["wrist"], msg))
        self.commands += 1

    def _on_state(self, msg: JointState) -> None:
        try:
            sample, notes = self.translator.state_from_shadow(list(msg.name), msg.position, msg.velocity, msg.effort)
        except Exception as exc:
            self._reject("Shadow joint state", exc)
            return
        if sample is None:
            return  # e.g. the arm's /joint_states: nothing of the hand
        for note in notes:
            self.get_logger().warning(f"Shadow joint state: {note}", throttle_duration_sec=10.0)
        out = joint_state_msg(sample, msg.header.stamp)
        out.header.frame_id = msg.header.frame_id
        self.pub_state.publish(out)
        self.states += 1


def main(argv: list[str] | None = None) -> int:
    return spin_adapter(ShadowAdapter, NODE_NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
