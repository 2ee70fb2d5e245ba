"""End to end: the sim node renders a scene and writes its calibration YAML; the perception node
reads that YAML, segments the sim's camera stream (16UC1 depth, as a RealSense publishes) and
answers /dex/segment_object with an object cloud that lies on a ground-truth object."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

from conftest import require_built_interfaces  # noqa: E402

require_built_interfaces("srv", "SegmentObject")
import rclpy  # noqa: E402
pytest.importorskip("dex_sim.node")

from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from dex_interfaces.srv import SegmentObject  # noqa: E402
from dex_perception import msgs as conv  # noqa: E402

TIMEOUT_S = 90.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_sim_camera_to_object_cloud(tmp_path):
    calib = tmp_path / "sim_camera.yaml"
    logs = {name: tmp_path / f"{name}.log" for name in ("sim", "perception")}
    procs = []
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = Node("perception_e2e_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    truth: dict = {}
    node.create_subscription(PoseArray, "/sim/ground_truth/object_poses", lambda m: truth.update(poses=m), 10)
    node.create_subscription(String, "/sim/ground_truth/object_names", lambda m: truth.update(names=m.data), 10)
    statuses: list[dict] = []
    node.create_subscription(String, "/dex/perception/status", lambda m: statuses.append(json.loads(m.data)), latched)
    client = node.create_client(SegmentObject, "/dex/segment_object")

    def output() -> str:
        return "\n".join(f"--- {k}\n{p.read_text(errors='replace')[-4000:]}" for k, p in logs.items() if p.exists())

    def alive() -> None:
        for proc in procs:
            assert proc.poll() is None, f"a node died:\n{output()}"

    try:
        with open(logs["sim"], "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dex_sim.node", "--ros-args", "-p", "robot:=ur5e_leap", "-p", "num_objects:=3",
                 "-p", "object_set:=builtin/test", "-p", "seed:=4", "-p", "camera_rate_hz:=4.0",
                 "-p", f"calibration_out:={calib}"], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path))
        deadline = time.monotonic() + TIMEOUT_S
        while not calib.exists():
            alive()
            assert time.monotonic() < deadline, f"the sim never wrote {calib}:\n{output()}"
            time.sleep(0.2)
        with open(logs["perception"], "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dex_perception.node", "--ros-args", "-p", f"calibration:={calib}",
                 "-p", "publish_rate_hz:=1.0"], stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT))
        res = None
        while True:
            alive()
            assert time.monotonic() < deadline, f"no ok answer (last: {res and (res.status, res.message)}):\n{output()}"
            executor.spin_once(timeout_sec=0.1)
            if not client.service_is_ready():
                continue
            future = client.call_async(SegmentObject.Request(prompt="largest"))
            while not future.done():
                alive()
                assert time.monotonic() < deadline, f"no answer:\n{output()}"
                executor.spin_once(timeout_sec=0.05)
            res = future.result()
            if res.status == "ok" and "poses" in truth and "names" in truth:
                break
            time.sleep(0.3)
        names = json.loads(truth["names"])
        assert res.success and 1 <= res.num_objects <= len(names), (res.message, names)
        cloud = conv.cloud_arrays(res.object_cloud)
        assert res.object_cloud.header.frame_id == "base_link" and cloud.shape[0] >= 30
        centre = cloud[:, :3].mean(axis=0)
        objects = np.array([[p.position.x, p.position.y, p.position.z] for p in truth["poses"].poses])
        # the cloud sits on one of the sim's objects (object origins are at the mesh base centre)
        assert np.min(np.linalg.norm(objects[:, :2] - centre[:2], axis=1)) < 0.08, (centre, objects)
        assert -0.005 < cloud[:, 2].min() and cloud[:, 2].max() < 0.3
        assert np.allclose(np.linalg.norm(cloud[:, 3:], axis=1), 1.0, atol=1e-3)
        deadline = time.monotonic() + 10
        while not any(s.get("status") == "ok" for s in statuses) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert any(s.get("status") == "ok" for s in statuses), statuses[-3:]
    finally:
        for proc in procs:
            _stop(proc)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
