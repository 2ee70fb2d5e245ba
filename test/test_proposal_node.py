"""The proposal node as a subprocess: statuses for bad clouds over the service, a malformed topic
message that does not kill it, and proposals + markers for a good cloud.

Domain isolation comes from test/conftest.py; every wait is bounded by :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

pytestmark = pytest.mark.ros

from conftest import require_built_interfaces  # noqa: E402

require_built_interfaces("srv", "ProposeGrasps")
import rclpy  # noqa: E402

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from dex_interfaces.msg import GraspProposalArray  # noqa: E402
from dex_interfaces.srv import ProposeGrasps  # noqa: E402
from dex_proposal import msgs as conv  # noqa: E402

TIMEOUT_S = 120.0
REPO_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def start_node(tmp: Path, iter_scale: float = 0.5, warm_up: bool = True):
    args = ["-p", "robot:=ur5e_leap", "-p", "n_candidates:=8", "-p", f"iter_scale:={iter_scale}", "-p", "top_k:=3",
            "-p", "auto_propose:=true", "-p", f"warm_up:={str(warm_up).lower()}"]
    log = tmp / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dex_proposal.node", "--ros-args", *args],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class Client:
    def __init__(self):
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("proposal_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = self.node.create_publisher(PointCloud2, "/dex/object_cloud", latched)
        self.arrays: list[GraspProposalArray] = []
        self.markers: list[MarkerArray] = []
        self.node.create_subscription(GraspProposalArray, "/dex/grasp_proposals", self.arrays.append, latched)
        self.node.create_subscription(MarkerArray, "/dex/markers", self.markers.append, latched)
        self.cli = self.node.create_client(ProposeGrasps, "/dex/propose_grasps")

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def call(self, proc, cloud: PointCloud2 | None = None, max_proposals: int = 0, seed: int = -1):
        deadline = time.monotonic() + TIMEOUT_S
        while not self.cli.service_is_ready():
            assert proc.poll() is None, "proposal node died"
            assert time.monotonic() < deadline, "service /dex/propose_grasps never appeared"
            self.spin(0.1)
        req = ProposeGrasps.Request()
        if cloud is not None:
            req.cloud = cloud
        req.max_proposals = max_proposals
        req.seed = seed
        future = self.cli.call_async(req)
        while not future.done():
            assert proc.poll() is None, "proposal node died"
            assert time.monotonic() < deadline, "no answer from /dex/propose_grasps"
            self.executor.spin_once(timeout_sec=0.05)
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _cloud(points, normals) -> PointCloud2:
    return conv.cloud_to_msg(Header(frame_id="base_link"), points, normals)


def _cylinder():
    m = trimesh.creation.cylinder(radius=0.03, height=0.1)
    m.apply_translation([0.0, 0.55, 0.05])
    pts, fi = trimesh.sample.sample_surface_even(m, 1200, seed=0)
    return pts, m.face_normals[fi]


def test_node_statuses_survives_bad_messages_and_proposes(tmp_path):
    with start_node(tmp_path) as (proc, log):
        c = Client()
        try:
            res = c.call(proc)  # nothing received yet, empty request cloud
            assert not res.success and res.status == "empty_cloud"
            pts, nrm = _cylinder()
            bad = pts.copy()
            bad[3, 0] = np.nan
            res = c.call(proc, _cloud(bad, nrm))
            assert not res.success and res.status == "nan_points" and len(res.proposals.proposals) == 0
            res = c.call(proc, _cloud(pts[:5], nrm[:5]))
            assert res.status == "too_few_points"
            # a cloud without normal fields on the topic and over the service: logged, node alive
            broken = _cloud(pts, nrm)
            broken.fields = [f for f in broken.fields if not f.name.startswith("normal")]
            c.pub.publish(broken)
            res = c.call(proc, broken)
            assert not res.success and res.status == "bad_cloud" and "normal" in res.message
            truncated = _cloud(pts, nrm)
            truncated.data = bytes(truncated.data)[:100]
            res = c.call(proc, truncated)
            assert res.status == "bad_cloud"
            wrong = _cloud(pts, nrm)
            wrong.header.frame_id = "camera_color_optical_frame"
            assert c.call(proc, wrong).status == "wrong_frame"
            # a good cloud on the topic: auto-proposed, published with markers
            c.pub.publish(_cloud(pts, nrm))
            deadline = time.monotonic() + TIMEOUT_S
            while not any(len(a.proposals) for a in c.arrays):
                assert proc.poll() is None, "proposal node died"
                assert time.monotonic() < deadline, f"no proposals published; log:\n{log.read_text()[-3000:]}"
                c.spin(0.2)
            arr = next(a for a in c.arrays if len(a.proposals))
            assert arr.header.frame_id == "base_link"
            p = arr.proposals[0]
            assert p.hand_name == "leap_right" and p.wrist_frame == "palm" and len(p.joint_names) == 16
            assert len(p.grasp.joint_positions) == 16 and p.score > 0
            q = p.grasp.wrist_pose.orientation
            assert abs(q.w**2 + q.x**2 + q.y**2 + q.z**2 - 1) < 1e-6
            deadline = time.monotonic() + 10
            while not any(any(m.ns == "proposals" and m.type == m.SPHERE_LIST for m in ma.markers) for ma in c.markers):
                assert time.monotonic() < deadline, "no proposal markers"
                c.spin(0.2)
            # the service on the latest cloud (empty request), with a cap
            res = c.call(proc, None, max_proposals=2, seed=3)
            assert res.success and res.status == "ok" and 1 <= len(res.proposals.proposals) <= 2
            assert proc.poll() is None
            assert "warm-up synthesis in" in log.read_text() and "(ok)" in log.read_text()  # before any request
        finally:
            c.close()


def test_sigint_during_a_synthesis_stops_it_and_exits_cleanly(tmp_path):
    """Shutting down while the auto-propose thread is synthesising: the synthesis is abandoned at its
    next progress check and the process exits 0 (a daemon thread left inside torch or MuJoCo at
    interpreter exit once aborted the node, exit -6, in a graph shutdown test)."""
    import signal

    with start_node(tmp_path, iter_scale=20.0, warm_up=False) as (proc, log):  # a synthesis of minutes
        c = Client()
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while "dex_proposal ready" not in log.read_text():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "node did not come up"
                time.sleep(0.2)
            pts, nrm = _cylinder()
            c.pub.publish(_cloud(pts, nrm))
            c.spin(2.0)  # the auto-propose thread is now inside the synthesis
        finally:
            c.close()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)  # far less than the synthesis would take
        text = log.read_text()
        assert code == 0, text[-3000:]
        assert "synthesis abandoned" in text, text[-3000:]  # stopped, not killed with the interpreter
        assert "Traceback" not in text and "proposal failed" not in text, text[-3000:]
        assert not any(len(a.proposals) for a in c.arrays)  # it did not run to the end
