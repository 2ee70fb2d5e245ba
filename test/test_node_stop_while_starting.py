"""Every node stopped while it is still being built exits 0, without a traceback.

``ros2 launch`` stops a graph with SIGINT then SIGTERM, also while its nodes are still loading a
robot, a MuJoCo scene or the grasp synthesiser (seconds on a busy CI machine). rclpy's signal handler
shuts the context down and the node's next ``create_publisher`` raised ``RCLError``: exit code 1 and
a traceback (seen in CI for robot_markers; the other nodes had the same ``main``). The helper script
sends SIGTERM to the node's own process right after ``rclpy.init``, so the stop always comes before
the node is built (the orchestrator installs its own SIGTERM handler after ``rclpy.init`` and is not
run this way).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HELPER = os.path.join(os.path.dirname(__file__), "helpers", "stop_while_starting.py")

NODES = {
    "sim": ("dex_sim.node", ["-p", "robot:=ur5e_leap", "-p", "camera_enabled:=false"]),
    "perception": ("dex_perception.node", []),
    "proposal": ("dex_proposal.node", ["-p", "robot:=ur5e_leap"]),
    "planning": ("dex_planning.node", ["-p", "robot:=ur5e_leap"]),
    "robot_markers": ("dex_bringup.robot_markers", ["-p", "robot:=ur5e_leap"]),
    "leap_adapter": ("dex_bringup.leap_adapter", []),
    "shadow_adapter": ("dex_bringup.shadow_adapter", []),
}


def test_every_node_stopped_while_it_starts_exits_cleanly():
    pytest.importorskip("rclpy")
    procs = {}
    for name, (module, params) in NODES.items():  # all at once: most of the time is imports
        procs[name] = subprocess.Popen([sys.executable, HELPER, module, "--ros-args", *params],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       env=dict(os.environ))
    failures = []
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            failures.append(f"{name}: still running 120 s after SIGTERM\n{out[-2000:]}")
            continue
        if proc.returncode != 0 or "Traceback" in out:
            failures.append(f"{name}: exit code {proc.returncode}\n{out[-2000:]}")
    assert not failures, "\n\n".join(failures)


def test_build_node_passes_real_errors_and_treats_a_shut_down_context_as_a_stop():
    rclpy = pytest.importorskip("rclpy")
    from dex_description.node_main import build_node

    def broken():
        raise RuntimeError("bad parameter")

    rclpy.init()
    try:
        assert build_node(lambda: "node") == "node"
        with pytest.raises(RuntimeError, match="bad parameter"):  # the context is up: a real error
            build_node(broken)
    finally:
        rclpy.try_shutdown()
    assert build_node(broken) is None  # the same error after a shutdown (SIGTERM) is a stop
    assert build_node(lambda: rclpy.create_node("late")) is None  # NotInitializedException
