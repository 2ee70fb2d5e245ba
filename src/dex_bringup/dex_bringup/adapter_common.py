"""ROS helpers shared by dex_bringup's adapter nodes: parameters in, JointState out (needs rclpy)."""

from __future__ import annotations

import sys
from typing import Any, Callable

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import JointState

from dex_bringup.adapters import AdapterError, JointSample
from dex_description.errors import DescriptionError
from dex_description.node_main import build_node


def declare_parameters(node: Node, defaults: dict[str, Any]) -> dict[str, Any]:
    """Declare ``defaults`` (dynamically typed, so ``30`` and ``30.0`` both work for a rate) and read
    them back converted to the defaults' types (float, str, or a list of str).

    Raises:
        AdapterError: A value that does not convert (names the parameter).
    """
    out = {}
    for name, default in defaults.items():
        node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True))
        value = node.get_parameter(name).value
        try:
            if isinstance(default, float):
                if isinstance(value, bool):
                    raise ValueError("expected a number")
                value = float(value)
            elif isinstance(default, list):
                value = [str(v) for v in (value or [])]
            else:
                value = "" if value is None else str(value)
        except (TypeError, ValueError) as exc:
            raise AdapterError(f"parameter {name}: {value!r}: {exc}") from None
        out[name] = value
    return out


def joint_state_msg(sample: JointSample, stamp) -> JointState:
    """``sample`` as sensor_msgs/JointState with ``stamp`` (absent velocity/effort: empty arrays)."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(sample.names)
    msg.position = sample.position.tolist()
    msg.velocity = sample.velocity.tolist() if sample.velocity is not None else []
    msg.effort = sample.effort.tolist() if sample.effort is not None else []
    return msg


def spin_adapter(make_node: Callable[[], Node], node_name: str, argv: list[str] | None) -> int:
    """An adapter's ``main``: init, build the node (a :class:`DescriptionError` -- bad parameter,
    unknown robot, bad YAML -- is logged and gives exit code 1), spin until Ctrl-C or shutdown
    (exit code 0), then clean up."""
    rclpy.init(args=sys.argv if argv is None else argv)
    try:
        try:
            node = build_node(make_node)
        except DescriptionError as exc:
            rclpy.logging.get_logger(node_name).error(f"cannot start: {exc}")
            return 1
        if node is None:  # stopped while it was being built
            return 0
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return 0
