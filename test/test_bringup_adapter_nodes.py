"""Real-hand adapter nodes on loopback, with fake drivers (domain isolation: test/conftest.py).

* leap_adapter as a process, ``source:=topic``: raw LEAP vectors in -> /leap_hand/joint_states;
  bad readings are skipped and the node keeps going.
* leap_adapter in process, ``source:=service``, with a fake LEAP client (the real ``leap_hand``
  srv types cannot be installed here; see the node's docstring): good, malformed and late
  responses.
* leap_adapter with LEAP's interfaces missing: exits 1 with a message that says what to do.
* shadow_adapter as a process against a fake Shadow driver (this test's node): commands split into
  the finger and wrist controllers, Shadow's /joint_states back to /shadow_hand/joint_states.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Duration  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from rclpy.task import Future  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from dex_description.config import load_robot_config  # noqa: E402
from dex_description.drivers import hand_command_map  # noqa: E402

TIMEOUT_S = 20.0
LEAP_NAMES = [str(i) for i in range(16)]
QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


class Peer:
    """An rclpy node of the test in its own context, with bounded waiting."""

    def __init__(self, name: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, context=self.context, start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.got: dict[str, list] = {}

    def listen(self, topic: str, typ) -> list:
        self.got[topic] = []
        self.node.create_subscription(typ, topic, self.got[topic].append, QOS)
        return self.got[topic]

    def spin_until(self, cond: Callable[[], bool], timeout: float = TIMEOUT_S, every: Callable[[], None] | None = None,
                   proc: subprocess.Popen | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if every is not None:
                every()
            self.executor.spin_once(timeout_sec=0.05)
            if cond():
                return True
            if proc is not None and proc.poll() is not None:
                return False
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _start(module: str, *params: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", module, "--ros-args"]
    for p in params:
        cmd += ["-p", p]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read()


@pytest.fixture
def peer():
    p = Peer("adapter_test_peer")
    yield p
    p.close()


# ------------------------------------------------------------------------------------------ LEAP


def test_leap_adapter_topic_source_process(peer):
    proc = _start("dex_bringup.leap_adapter", "source:=topic", "robot:=ur5e_leap")
    try:
        out = peer.listen("/leap_hand/joint_states", JointState)
        pub = peer.node.create_publisher(JointState, "/leap_hand/raw_joint_states", QOS)
        good = JointState(position=(math.pi + np.linspace(0.0, 0.75, 16)).tolist(), velocity=[0.5] * 16)

        assert peer.spin_until(lambda: bool(out), every=lambda: pub.publish(good), proc=proc), _stop(proc)
        first = out[-1]
        assert list(first.name) == LEAP_NAMES
        assert np.allclose(first.position, good.position) and np.allclose(first.velocity, 0.5)
        assert len(first.effort) == 0  # current is not torque unless effort_per_ma is set
        assert first.header.stamp.sec > 0  # unstamped input: stamped on arrival

        # malformed readings: skipped, and the node still translates the next good one
        for bad in (JointState(position=[math.pi] * 15), JointState(position=[math.pi] * 15 + [float("nan")]),
                    JointState(name=[f"j{i}" for i in range(16)], position=[math.pi] * 16)):
            pub.publish(bad)
        named = JointState(name=list(reversed(LEAP_NAMES)), position=list(np.arange(16.0) + 1.0))
        assert peer.spin_until(lambda: out[-1].position[0] == 16.0, every=lambda: pub.publish(named), proc=proc), _stop(proc)
        assert all(len(m.position) == 16 and np.all(np.isfinite(m.position)) for m in out)
        assert proc.poll() is None
    finally:
        log = _stop(proc)
    assert "skipped a LEAP state reading" in log, log


class FakeLeapClient:
    """Stands in for ``create_client(leap_hand.srv.LeapPosVelEff, ...)``: serves queued responses.
    ``"late"`` leaves a call unanswered (the node must give up on it after ``timeout_s``)."""

    def __init__(self, responses: list) -> None:
        self.responses = list(responses)
        self.calls = 0
        self.removed: list[Future] = []

    def service_is_ready(self) -> bool:
        return True

    def call_async(self, request) -> Future:
        self.calls += 1
        future = Future()
        response = self.responses.pop(0) if self.responses else "late"
        if response != "late":
            future.set_result(response)
        return future

    def remove_pending_request(self, future: Future) -> None:
        self.removed.append(future)


def test_leap_adapter_service_source_with_a_fake_leap(peer):
    from dex_bringup.leap_adapter import LeapAdapter

    pos1 = (math.pi + np.linspace(-0.1, 0.6, 16)).tolist()
    pos2 = (math.pi + np.linspace(0.2, 0.3, 16)).tolist()
    client = FakeLeapClient([
        SimpleNamespace(position=pos1, velocity=[0.1] * 16, effort=[300.0] * 16),
        SimpleNamespace(position=pos1[:15], velocity=[], effort=[]),  # wrong length
        SimpleNamespace(position=pos1[:15] + [float("nan")]),  # NaN
        SimpleNamespace(success=True),  # a type without 'position'
        None,
        "late",
        SimpleNamespace(position=pos2, velocity=[float("inf")] * 16, effort=[300.0] * 16),
    ])
    out = peer.listen("/leap_hand/joint_states", JointState)
    adapter = LeapAdapter(client_factory=lambda srv_type, name: client, context=peer.context,
                          parameter_overrides=[Parameter("srv_type", value="std_srvs.srv.Empty"),
                                               Parameter("rate_hz", value=100),  # an integer works too
                                               Parameter("timeout_s", value=0.1),
                                               Parameter("effort_per_ma", value=0.001)])
    peer.executor.add_node(adapter)
    try:
        assert peer.spin_until(lambda: len(out) >= 2 and np.allclose(out[-1].position, pos2)), (client.calls, len(out))
    finally:
        peer.executor.remove_node(adapter)
        adapter.destroy_node()
    assert np.allclose(out[0].position, pos1) and list(out[0].name) == LEAP_NAMES
    assert np.allclose(out[0].velocity, 0.1) and np.allclose(out[0].effort, 0.3)  # [N m] = 0.001 * 300 mA
    assert len(out[-1].velocity) == 0  # non-finite velocity left out, position kept
    assert all(np.all(np.isfinite(m.position)) for m in out)
    assert adapter.rejected == 4 and adapter.published == len(out) == 2
    assert len(client.removed) >= 1  # the unanswered call was abandoned, then polling went on


def test_leap_adapter_without_leap_interfaces_says_what_to_do():
    proc = _start("dex_bringup.leap_adapter")  # default srv_type leap_hand.srv.LeapPosVelEff: not installed here
    try:
        code = proc.wait(timeout=TIMEOUT_S)
    finally:
        log = _stop(proc)
    assert code == 1, log
    assert "leap_hand.srv" in log and "LEAP_Hand_API" in log and "ros2_module" in log, log


# ------------------------------------------------------------------------------------------ Shadow


def _point(positions, t: float, velocities=()) -> JointTrajectoryPoint:
    return JointTrajectoryPoint(positions=list(positions), velocities=list(velocities),
                                time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9))))


def test_shadow_adapter_against_a_fake_shadow_driver(peer):
    hand = load_robot_config("ur10e_shadow").hand
    names = list(hand_command_map(hand).names)
    proc = _start("dex_bringup.shadow_adapter", "robot:=ur10e_shadow")
    try:
        fingers = peer.listen("/rh_trajectory_controller/command", JointTrajectory)
        wrist = peer.listen("/rh_wr_trajectory_controller/command", JointTrajectory)
        states = peer.listen("/shadow_hand/joint_states", JointState)
        cmd_pub = peer.node.create_publisher(JointTrajectory, "/shadow_hand/joint_trajectory", QOS)
        js_pub = peer.node.create_publisher(JointState, "/joint_states", QOS)

        u = {n: 0.05 * (i + 1) for i, n in enumerate(names)}  # rh_FFJ0 = 0.25, ...
        cmd = JointTrajectory(joint_names=names, points=[_point([u[n] for n in names], 0.5, [0.2] * 20),
                                                         _point([2 * u[n] for n in names], 1.25, [0.0] * 20)])
        cmd.header.stamp.sec = 7
        assert peer.spin_until(lambda: bool(fingers) and bool(wrist), every=lambda: cmd_pub.publish(cmd), proc=proc), _stop(proc)
        f, w = fingers[-1], wrist[-1]
        assert f.header.stamp.sec == 7
        assert sorted(w.joint_names) == ["rh_WRJ1", "rh_WRJ2"] and len(f.joint_names) == 22
        fp = dict(zip(f.joint_names, f.points[0].positions))
        assert fp["rh_FFJ1"] == pytest.approx(u["rh_FFJ0"] / 2) and fp["rh_FFJ2"] == pytest.approx(u["rh_FFJ0"] / 2)
        assert fp["rh_LFJ5"] == pytest.approx(u["rh_LFJ5"]) and fp["rh_THJ1"] == pytest.approx(u["rh_THJ1"])
        assert dict(zip(f.joint_names, f.points[1].positions))["rh_MFJ2"] == pytest.approx(u["rh_MFJ0"])  # 2*J0/2
        assert dict(zip(f.joint_names, f.points[0].velocities))["rh_FFJ1"] == pytest.approx(0.1)
        assert dict(zip(w.joint_names, w.points[0].positions))["rh_WRJ1"] == pytest.approx(u["rh_WRJ1"])
        assert (f.points[1].time_from_start.sec, f.points[1].time_from_start.nanosec) == (1, 250_000_000)

        # a malformed command is dropped; the next good one still goes through
        n_before = len(fingers)
        cmd_pub.publish(JointTrajectory(joint_names=names, points=[_point([float("nan")] * 20, 0.5)]))
        cmd_pub.publish(JointTrajectory(joint_names=names[:-1], points=[_point([0.1] * 19, 0.5)]))
        good = JointTrajectory(joint_names=names, points=[_point([0.3] * 20, 1.0)])
        assert peer.spin_until(lambda: len(fingers) > n_before and dict(zip(fingers[-1].joint_names, fingers[-1].points[0].positions))["rh_FFJ1"] == pytest.approx(0.15),
                               every=lambda: cmd_pub.publish(good), proc=proc), _stop(proc)
        assert all(np.all(np.isfinite(m.points[0].positions)) for m in fingers)

        # Shadow's /joint_states (alphabetical rh_ names, shared with the arm) -> our state
        joints = list(hand.joints)
        q = {j: 0.02 * (i + 1) for i, j in enumerate(joints)}
        shadow_names = sorted(joints) + ["shoulder_pan_joint"]
        js = JointState(name=shadow_names, position=[q.get(n, 9.0) for n in shadow_names],
                        velocity=[0.0] * len(shadow_names), effort=[1.0] * len(shadow_names))
        js.header.frame_id = "shadow"
        arm_only = JointState(name=["shoulder_pan_joint"], position=[1.0])
        assert peer.spin_until(lambda: bool(states), every=lambda: (js_pub.publish(arm_only), js_pub.publish(js)),
                               proc=proc), _stop(proc)
        s = states[-1]
        assert list(s.name) == joints and np.allclose(s.position, [q[j] for j in joints])
        assert s.header.frame_id == "shadow" and np.allclose(s.effort, 1.0)
        assert all(len(m.name) == 24 for m in states)  # the arm-only message was not republished
        assert proc.poll() is None
    finally:
        log = _stop(proc)
    assert "dropped a hand command" in log, log
