"""What every node's ``main`` shares: building the node when a stop may come while it is built.

``ros2 launch`` (and our launcher) stops nodes with SIGINT, then SIGTERM. rclpy's signal handler
shuts the context down; a node that is still being built (loading a robot model, a MuJoCo scene or
the grasp synthesiser takes seconds on a busy machine) then fails at its next rclpy call -- creating
a publisher raises ``RCLError`` (a ``RuntimeError``), creating the node ``NotInitializedException`` --
or sees ``KeyboardInterrupt``. That is a
stop, not a crash: the node's ``main`` should exit 0 without a traceback. rclpy is imported here
only when called, so this module stays importable without ROS.
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def build_node(make_node: Callable[[], T]) -> T | None:
    """``make_node()``, or None when the process was told to stop while the node was being built.

    Args:
        make_node: Builds the node (after ``rclpy.init``).

    Returns:
        The node, or None after SIGINT/SIGTERM during ``make_node`` (the caller exits 0).

    Raises:
        Whatever ``make_node`` raised for any other reason, including a ``RuntimeError`` while the
        rclpy context is still valid (a real error, not a stop).
    """
    import rclpy
    from rclpy.exceptions import NotInitializedException
    from rclpy.executors import ExternalShutdownException

    try:
        return make_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        return None
    except (RuntimeError, NotInitializedException):  # RCLError, or Node() on a context already shut down
        if rclpy.ok():
            raise
        return None
