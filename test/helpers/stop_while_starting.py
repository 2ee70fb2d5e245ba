"""Run a node's ``main`` and send this process SIGTERM right after ``rclpy.init``, i.e. while the node
is being built (what ``ros2 launch`` does when it stops a graph that is still starting).

Usage: ``python stop_while_starting.py MODULE [ros args...]``; exits with ``MODULE.main``'s code.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import rclpy

_init = rclpy.init


def _init_then_stop(*args, **kwargs):
    _init(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)


rclpy.init = _init_then_stop

if __name__ == "__main__":
    module = importlib.import_module(sys.argv[1])
    sys.exit(module.main([sys.argv[1], *sys.argv[2:]]))
