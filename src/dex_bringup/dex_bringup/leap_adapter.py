"""``leap_adapter`` node: the LEAP Hand's joint states as a topic, ``/leap_hand/joint_states``.

LEAP_Hand_API's ROS 2 node (``ros2_module``, ``leaphand_node``) takes commands on ``cmd_leap``
but publishes no joint states: it serves them through services of its own package
``leap_hand`` (``leap_position`` -> ``LeapPosition``, ``leap_pos_vel_eff`` -> ``LeapPosVelEff``,
...: empty request, ``float64[]`` vectors in the response). This node polls one such service at
``rate_hz`` and publishes ``sensor_msgs/JointState`` on the hand's ``driver.state_topic`` of the
robot YAML: names ``"0"``..``"15"`` (hardware order), position [rad] in LEAP's convention
(pi = flat, like ``cmd_leap``), velocity [rad/s] when the response has it, effort [N m] only when
``effort_per_ma`` > 0 (LEAP reports motor current [mA]). The stamp is the midpoint between the
request and the response [ROS time]. The translation is :func:`dex_bringup.adapters.leap_state`.

Parameters:
    ``robot`` (``ur5e_leap``): robot combo (names, output topic).
    ``source`` (``service``): ``service`` polls LEAP's node; ``topic`` republishes a JointState
        topic carrying the raw hardware vector (see below).
    ``service`` (``/leap_pos_vel_eff``) and ``srv_type`` (``leap_hand.srv.LeapPosVelEff``): the
        service to poll and its type, imported by name at start-up. The response is read by field
        name: ``position`` (required), ``velocity`` and ``effort`` when the type has them, so
        ``service:=/leap_position srv_type:=leap_hand.srv.LeapPosition`` works too (older
        LEAP_Hand_API versions).
    ``source_topic`` (``/leap_hand/raw_joint_states``): input of the ``topic`` source; names
        empty (hardware order) or a permutation of ``"0"``..``"15"``, effort = current [mA].
    ``state_topic`` (``""``: the robot YAML's ``hand.driver.state_topic``): output.
    ``rate_hz`` (50.0) [Hz] polling rate; ``timeout_s`` (0.5) [s] a call older than this is
    abandoned (warned) and the next one sent; ``effort_per_ma`` (0.0) [N m/mA].

A missing ``leap_hand`` package (LEAP's interfaces are not installed) stops the node at start-up
with a message saying how to fix it. A response that cannot be used (wrong length, NaN, a type
without ``position``) is logged (throttled) and skipped; the node never dies on one.

Why a ``topic`` source, and how this is tested: ``leap_hand``'s srv types cannot be installed in
the pip venv (no wheel; it is built from LEAP's source in a colcon workspace), so no test here can
run a wire-compatible fake LEAP service. The tests therefore drive (1) the service source in
process with a fake client (``client_factory``) that hands the node's real timer/callback code
LEAP-shaped responses, good and bad, and (2) the whole node as a separate process over the
loopback DDS through the ``topic`` source, which is also useful on its own for setups that
publish the raw vector (a patched ``leaphand_node``, a rosbag).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import JointState

from dex_bringup.adapter_common import declare_parameters, joint_state_msg, spin_adapter
from dex_bringup.adapters import AdapterError, JointSample, import_interface, leap_state
from dex_description.config import load_robot_config
from dex_description.drivers import hand_state_map

NODE_NAME = "leap_adapter"
PARAMETERS: dict[str, Any] = {
    "robot": "ur5e_leap",
    "source": "service",
    "service": "/leap_pos_vel_eff",
    "srv_type": "leap_hand.srv.LeapPosVelEff",
    "source_topic": "/leap_hand/raw_joint_states",
    "state_topic": "",
    "rate_hz": 50.0,
    "timeout_s": 0.5,
    "effort_per_ma": 0.0,
}
LEAP_HINT = ("LEAP's interfaces come with LEAP_Hand_API's ros2_module (package leap_hand): build it in a colcon "
             "workspace and source its install/setup.bash before starting this node; or set srv_type/service "
             "to the type and service your LEAP node serves (e.g. leap_hand.srv.LeapPosition on /leap_position)")


class LeapAdapter(Node):
    """See the module docstring.

    Args:
        client_factory: ``(srv_type, service_name) -> client`` (default ``self.create_client``);
            tests pass a fake with ``service_is_ready()`` and ``call_async(request) -> Future``.
        **kwargs: Passed to :class:`rclpy.node.Node` (e.g. ``context``, ``parameter_overrides``).
    """

    def __init__(self, client_factory: Callable[[type, str], Any] | None = None, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = declare_parameters(self, PARAMETERS)
        self.p = p
        hand = load_robot_config(p["robot"]).hand
        self.driver = hand_state_map(hand)
        if p["source"] not in ("service", "topic"):
            raise AdapterError(f"parameter source must be 'service' or 'topic', got {p['source']!r}")
        for key in ("rate_hz", "timeout_s"):
            if not p[key] > 0.0:
                raise AdapterError(f"parameter {key} must be > 0, got {p[key]!r}")
        if not p["effort_per_ma"] >= 0.0:
            raise AdapterError(f"parameter effort_per_ma must be >= 0, got {p['effort_per_ma']!r}")
        self.effort_per_ma = p["effort_per_ma"]
        self.timeout_s = p["timeout_s"]
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        out_topic = str(p["state_topic"]) or hand.driver.state_topic
        self.pub = self.create_publisher(JointState, out_topic, qos)
        self.published = 0
        self.rejected = 0
        self._pending = None
        self._sent = None
        if p["source"] == "service":
            try:
                self.srv_type = import_interface(str(p["srv_type"]))
            except AdapterError as exc:
                raise AdapterError(f"{exc}. {LEAP_HINT}") from None
            self.client = (client_factory or self.create_client)(self.srv_type, str(p["service"]))
            self.create_timer(1.0 / float(p["rate_hz"]), self._poll)
            what = f"polling {p['service']} ({p['srv_type']}) at {float(p['rate_hz']):g} Hz"
        else:
            self.create_subscription(JointState, str(p["source_topic"]), self._on_raw, qos)
            what = f"republishing {p['source_topic']}"
        self.get_logger().info(f"{what} -> {out_topic} (names {self.driver.names[0]}..{self.driver.names[-1]})")

    # ------------------------------------------------------------------ service source

    def _poll(self) -> None:
        now = self.get_clock().now()
        if self._pending is not None:
            if not self._pending.done():
                if (now - self._sent).nanoseconds * 1e-9 <= self.timeout_s:
                    return  # one call in flight at a time
                self.get_logger().warning(f"{self.p['service']} did not answer within {self.timeout_s:g} s; retrying",
                                          throttle_duration_sec=5.0)
                remove = getattr(self.client, "remove_pending_request", None)
                if remove is not None:
                    remove(self._pending)
            self._pending = None
        if not self.client.service_is_ready():
            self.get_logger().warning(f"waiting for the LEAP service {self.p['service']} ({self.p['srv_type']}); "
                                      "is LEAP's leaphand_node running?", throttle_duration_sec=10.0)
            return
        self._sent = now
        future = self.client.call_async(self.srv_type.Request())
        self._pending = future
        future.add_done_callback(self._on_response)

    def _on_response(self, future) -> None:
        if future is not self._pending:
            return  # abandoned after a timeout
        self._pending = None
        try:
            response = future.result()
            if response is None or not hasattr(response, "position"):
                raise AdapterError(f"the response of {self.p['srv_type']} has no 'position' field")
            sample, notes = leap_state(self.driver, response.position, getattr(response, "velocity", None),
                                       getattr(response, "effort", None), effort_per_ma=self.effort_per_ma)
        except Exception as exc:  # a bad response must never stop the node
            self._reject(exc)
            return
        now = self.get_clock().now()
        sent = self._sent if self._sent is not None else now
        mid = Time(nanoseconds=(sent.nanoseconds + now.nanoseconds) // 2, clock_type=now.clock_type)
        self._publish(sample, notes, mid.to_msg())

    # ------------------------------------------------------------------ topic source

    def _on_raw(self, msg: JointState) -> None:
        try:
            sample, notes = leap_state(self.driver, msg.position, msg.velocity, msg.effort, names=list(msg.name),
                                       effort_per_ma=self.effort_per_ma)
        except Exception as exc:
            self._reject(exc)
            return
        stamp = msg.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:
            stamp = self.get_clock().now().to_msg()
        self._publish(sample, notes, stamp)

    # ------------------------------------------------------------------ common

    def _reject(self, exc: Exception) -> None:
        self.rejected += 1
        kind = "" if isinstance(exc, AdapterError) else f"{type(exc).__name__}: "
        self.get_logger().warning(f"skipped a LEAP state reading: {kind}{exc}", throttle_duration_sec=2.0)

    def _publish(self, sample: JointSample, notes: list[str], stamp) -> None:
        for note in notes:
            self.get_logger().warning(f"LEAP state: {note}", throttle_duration_sec=10.0)
        self.pub.publish(joint_state_msg(sample, stamp))
        self.published += 1


def main(argv: list[str] | None = None) -> int:
    return spin_adapter(LeapAdapter, NODE_NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
