"""The whole simulated graph started the way a user starts it, ``dexgrasp launch sim``: camera,
camera_info and joint states arrive; an arm trajectory on the UR driver's topic and a hand target on
LEAP's ``/cmd_leap`` move the simulated robot there; SIGINT stops every node, none is left behind.

Domain isolation comes from test/conftest.py; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy")
try:
    from dex_interfaces.srv import SegmentObject  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the build
    pytest.skip(f"dex_interfaces is not built ({exc})", allow_module_level=True)

from builtin_interfaces.msg import Duration  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from dex_description.config import load_robot_config  # noqa: E402
from dex_description.drivers import arm_map, hand_command_map, hand_state_map  # noqa: E402

TIMEOUT_S = 120.0


def _children(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_launch_sim_graph_moves_the_robot_and_stops_cleanly(tmp_path):
    cfg = load_robot_config("ur5e_leap")
    log = tmp_path / "launch.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "dex_bringup.cli", "launch", "sim", "robot:=ur5e_leap",
                                 "num_objects:=1", "seed:=2"], stdout=f, stderr=subprocess.STDOUT,
                                env=dict(os.environ), cwd=tmp_path)

    def output() -> str:
        return log.read_text(errors="replace")[-5000:]

    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = Node("launch_sim_test", context=context, start_parameter_services=False)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
    got: dict[str, object] = {}
    for topic, typ in (("/joint_states", JointState), ("/camera/depth/image_rect_raw", Image),
                       ("/camera/depth/camera_info", CameraInfo)):
        node.create_subscription(typ, topic, lambda m, t=topic: got.__setitem__(t, m), qos)
    pub_arm = node.create_publisher(JointTrajectory, cfg.arm.driver.command_topic, qos)
    pub_hand = node.create_publisher(JointState, cfg.hand.driver.command_topic, qos)

    def spin_until(cond, what, timeout=TIMEOUT_S):
        end = time.monotonic() + timeout
        while not cond():
            if proc.poll() is not None:
                pytest.fail(f"dexgrasp launch exited ({proc.returncode}) while waiting for {what}:\n{output()}")
            if time.monotonic() > end:
                pytest.fail(f"timed out waiting for {what}:\n{output()}")
            ex.spin_once(timeout_sec=0.05)

    nodes: set[int] = set()
    try:
        spin_until(lambda: all(t in got for t in ("/joint_states", "/camera/depth/image_rect_raw",
                                                  "/camera/depth/camera_info")), "joint states, depth and camera_info")
        depth, info = got["/camera/depth/image_rect_raw"], got["/camera/depth/camera_info"]
        assert (depth.width, depth.height) == (info.width, info.height) and depth.encoding in ("16UC1", "32FC1")
        nodes = _children(proc.pid)
        assert len(nodes) >= 5, nodes  # sim, perception, proposal, planning, markers (+ orchestrator)

        amap = arm_map(cfg)
        js = got["/joint_states"]
        pos = dict(zip(js.name, js.position))
        q0 = np.array([pos[n] for n in amap.names])
        target = q0 + np.array([0.15, -0.1, 0.1, 0.1, -0.1, 0.2])
        msg = JointTrajectory()
        msg.joint_names = list(amap.names)
        pt = JointTrajectoryPoint()
        pt.positions = target.tolist()
        pt.time_from_start = Duration(sec=2)
        msg.points.append(pt)
        spin_until(lambda: pub_arm.get_subscription_count() > 0 and pub_hand.get_subscription_count() > 0,
                   "the sim node's command subscriptions")
        pub_arm.publish(msg)

        hmap = hand_command_map(cfg.hand)
        hand_model = np.asarray(cfg.hand.named_poses["pre_shape"], float)
        hand_driver = hmap.to_driver(cfg.hand.actuated_from_joints(hand_model), cfg.hand.actuated_names)
        pub_hand.publish(JointState(name=list(hmap.names), position=hand_driver.tolist()))

        def arm_error():
            p = dict(zip(got["/joint_states"].name, got["/joint_states"].position))
            return np.abs(np.array([p[n] for n in amap.names]) - target).max()

        smap = hand_state_map(cfg.hand)

        def hand_error():
            js = got["/joint_states"]
            state = smap.from_driver([n for n in js.name if n not in amap.names],
                                     [v for n, v in zip(js.name, js.position) if n not in amap.names])
            return max(abs(state[j] - q) for j, q in zip(cfg.hand.joints, hand_model))

        spin_until(lambda: arm_error() < 0.01, "the arm to reach the commanded joints", 60.0)
        spin_until(lambda: hand_error() < 0.05, "the hand to reach its commanded pre-shape", 30.0)
    finally:
        ex.shutdown(timeout_sec=2.0)
        node.destroy_node()
        context.shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"dexgrasp launch did not stop on SIGINT:\n{output()}")
    assert rc == 0, output()
    left = [pid for pid in nodes if _alive(pid)]
    assert not left, f"nodes left running after shutdown: {left}"
