"""ROS 2 toolchain tests: the built dex_interfaces, cross-process pub/sub and action round trip.

Skips (with the reason) when rclpy or the built dex_interfaces is not importable; build it with
``python src/dex_interfaces/build_in_venv.py``. A second process (``test/helpers/ros_peer.py``)
echoes a GraspProposalArray and serves ExecuteGrasp. Domain and loopback-only discovery come
from test/conftest.py; every wait is bounded by :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import array
import importlib.util
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")  # reason names the import error; needs the ros-wheels extra
_BUILD_HINT = "run `python src/dex_interfaces/build_in_venv.py` (pip venv) or colcon build"
try:
    _msg = pytest.importorskip("dex_interfaces.msg")
except pytest.skip.Exception as _exc:
    pytest.skip(f"dex_interfaces is not built ({_exc}); {_BUILD_HINT}", allow_module_level=True)
if not hasattr(_msg, "GraspProposalArray"):
    pytest.skip("dex_interfaces.msg resolves to a namespace package, not the built interfaces; "
                + _BUILD_HINT, allow_module_level=True)

from geometry_msgs.msg import Pose  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from std_msgs.msg import Empty  # noqa: E402

from dex_interfaces.action import ExecuteGrasp  # noqa: E402
from dex_interfaces.msg import GraspProposal, GraspProposalArray, HandState  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = Path(__file__).resolve().parent / "helpers" / "ros_peer.py"
TIMEOUT_S = 30.0  # [s] bound on every wait for the peer / DDS
EXIT_TIMEOUT_S = 10.0  # [s] bound on the peer's orderly exit before it is killed
ECHO_IN = "/test/proposals_in"
ECHO_OUT = "/test/proposals_out"
ACTION = "/test/execute_grasp"
SHUTDOWN_TOPIC = "/test/peer_shutdown"
PEER_NAME_PREFIX = f"dex_ros_peer_{os.getpid()}_"  # peers of this test process only
UNKNOWN_NODE = "_NODE_NAME_UNKNOWN_"  # rmw's name for endpoints whose node is not yet known
OBJECT_ID = f"mug_03-{os.getpid()}"  # unique per test process: cross-talk would show


class PeerDied(RuntimeError):
    """The helper process exited while the test was waiting for it."""


def latched_qos(depth: int = 10) -> QoSProfile:
    """Reliable, transient-local QoS (same as the peer): nothing is lost to late matching."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Peer:
    """The helper process plus where its output goes."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, shutdown_pub: Any) -> None:
        self.proc = proc
        self.log_path = log_path
        self.shutdown_pub = shutdown_pub  # latched publisher on this peer's own shutdown topic

    def output(self) -> str:
        """Everything the peer printed so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raises :class:`PeerDied` (with its output) if the peer has exited."""
        if self.proc.poll() is not None:
            raise PeerDied(f"ros_peer exited with {self.proc.returncode}:\n{self.output()}")

    def stop(self) -> tuple[int, str]:
        """Ask the peer to exit (shutdown topic, then SIGINT, then SIGKILL).

        The shutdown topic is transient-local and unique to this peer, so the request is
        delivered even if the peer's subscription matches only after publishing; it is repeated
        so that delivery does not wait for the DDS heartbeat period after a lost first sample.

        Returns:
            (exit status, how it was stopped).
        """
        how = "already exited"
        if self.proc.poll() is None:
            how = "shutdown topic"
            try:
                self._request_shutdown(EXIT_TIMEOUT_S / 2)
            except subprocess.TimeoutExpired:
                how = "SIGINT"
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=EXIT_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    how = "SIGKILL"
                    self.proc.kill()
                    self.proc.wait(timeout=EXIT_TIMEOUT_S)
        return self.proc.returncode, how

    def _request_shutdown(self, timeout_s: float) -> None:
        """Publish the shutdown request every 0.2 s until the peer exits.

        Raises:
            subprocess.TimeoutExpired: the peer is still running after ``timeout_s`` [s].
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.shutdown_pub.publish(Empty())
            try:
                self.proc.wait(timeout=min(0.2, max(deadline - time.monotonic(), 0.01)))
                return
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise


class RosHarness:
    """This test process's ROS side: own context, node, executor, bounded spinning."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("dex_toolchain_test", context=self.context,
                         start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.peers_started = 0

    def spin_until(self, condition: Callable[[], bool], what: str, peer: Peer | None = None,
                   timeout_s: float = TIMEOUT_S) -> None:
        """Spin until ``condition()`` holds; fail after ``timeout_s`` [s] or if the peer died."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if peer is not None:
                peer.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}"
                            + (f"\npeer output:\n{peer.output()}" if peer else ""))
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        if self.context.ok():
            self.context.shutdown()


@pytest.fixture(scope="module")
def ros() -> Iterator[RosHarness]:
    """rclpy in this process, isolated in its own context."""
    assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", \
        "conftest must restrict discovery to loopback"
    harness = RosHarness()
    yield harness
    harness.close()


def start_peer(ros: RosHarness, tmp_dir: Path) -> Peer:
    """Start test/helpers/ros_peer.py as a separate process (inherits domain and range)."""
    ros.peers_started += 1
    shutdown_topic = f"{SHUTDOWN_TOPIC}_{ros.peers_started}"
    shutdown_pub = ros.node.create_publisher(Empty, shutdown_topic, latched_qos(1))
    log_path = tmp_dir / "ros_peer.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(PEER_SCRIPT),
             "--node-name", f"{PEER_NAME_PREFIX}{ros.peers_started}",
             "--echo-in", ECHO_IN, "--echo-out", ECHO_OUT,
             "--action", ACTION, "--shutdown-topic", shutdown_topic, "--max-lifetime", "300"],
            stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ), cwd=tmp_dir)
    return Peer(proc, log_path, shutdown_pub)


@pytest.fixture(scope="module")
def peer(ros: RosHarness) -> Iterator[Peer]:
    """The helper process, started once per module (per xdist worker); always reaped."""
    with tempfile.TemporaryDirectory(prefix="dex_ros_peer_") as tmp:
        handle = start_peer(ros, Path(tmp))
        try:
            ros.spin_until(lambda: "READY" in handle.output(), "ros_peer to start", handle)
            yield handle
        finally:
            status, how = handle.stop()
        assert (status, how) == (0, "shutdown topic"), f"peer stopped by {how}:\n{handle.output()}"


# ----------------------------------------------------------------------------- helpers


def to_plain(value: Any) -> Any:
    """Message → nested dicts/lists of plain values; ``array.array`` → list; NaN → "NaN"."""
    if hasattr(value, "get_fields_and_field_types"):
        return {name: to_plain(getattr(value, name))
                for name in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple, array.array)):
        return [to_plain(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def make_pose(rng: random.Random) -> Pose:
    """A pose with a non-trivial position [m] and a random unit quaternion."""
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (rng.uniform(-1.0, 1.0) for _ in range(3))
    q = [rng.gauss(0.0, 1.0) for _ in range(4)]
    norm = math.sqrt(sum(c * c for c in q))
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
        c / norm for c in q)
    return pose


def make_proposal_array() -> GraspProposalArray:
    """A fully populated array: three proposals, 24/16/0 joints, NaN energy on one."""
    rng = random.Random(1234)
    msg = GraspProposalArray()
    msg.header.frame_id = "base_link"
    msg.header.stamp.sec = 1_700_000_000
    msg.header.stamp.nanosec = 123_456_789
    msg.object_id = OBJECT_ID
    specs = [("shadow_right", "rh_palm", 24, -12.5), ("leap_right", "palm_lower", 16, math.nan),
             ("leap_right", "palm_lower", 0, 0.0)]
    for index, (hand, frame, n_joints, energy) in enumerate(specs):
        proposal = GraspProposal()
        proposal.id = f"bodex-{index:04d}"
        proposal.hand_name = hand
        proposal.method = "bodex"
        proposal.wrist_frame = frame
        proposal.joint_names = [f"{hand}_j{j}" for j in range(n_joints)]
        for state_name in ("pregrasp", "grasp", "squeeze"):
            state = HandState()
            state.wrist_pose = make_pose(rng)
            state.joint_positions = [rng.uniform(-0.5, 1.6) for _ in range(n_joints)]
            setattr(proposal, state_name, state)
        proposal.score = 1.0 - 0.25 * index
        proposal.energy = energy
        msg.proposals.append(proposal)
    return msg


# ----------------------------------------------------------------------------- tests


def test_built_package_is_real() -> None:
    """dex_interfaces resolves to the built, installed package, not the source folder."""
    spec = importlib.util.find_spec("dex_interfaces")
    assert spec is not None
    assert spec.origin not in (None, "namespace"), \
        f"dex_interfaces is a namespace package: {list(spec.submodule_search_locations or [])}"
    origin = Path(spec.origin).resolve()
    assert origin.name == "__init__.py"
    src_dir = (REPO_ROOT / "src").resolve()
    assert src_dir not in origin.parents, f"dex_interfaces imports from the source tree: {origin}"
    msg_spec = importlib.util.find_spec("dex_interfaces.msg")
    assert msg_spec is not None and msg_spec.origin not in (None, "namespace")
    assert src_dir not in Path(msg_spec.origin).resolve().parents
    # generated constants are present
    assert ExecuteGrasp.Feedback.STAGE_DONE == "done"
    assert ExecuteGrasp.Goal.DEFAULT_PROPOSAL_POLICY == "best_reachable"


def test_proposal_array_round_trip(ros: RosHarness, peer: Peer) -> None:
    """A populated GraspProposalArray goes to the peer and comes back field-for-field equal."""
    sent = make_proposal_array()
    received: list[GraspProposalArray] = []
    pub = ros.node.create_publisher(GraspProposalArray, ECHO_IN, latched_qos())
    sub = ros.node.create_subscription(GraspProposalArray, ECHO_OUT, received.append, latched_qos())
    try:
        ros.spin_until(lambda: pub.get_subscription_count() > 0, "peer subscription", peer)
        ros.spin_until(lambda: sub.get_publisher_count() > 0, "peer echo publisher", peer)
        pub.publish(sent)
        ros.spin_until(lambda: len(received) > 0, "echoed GraspProposalArray", peer)
    finally:
        ros.node.destroy_publisher(pub)
        ros.node.destroy_subscription(sub)
    assert len(received) == 1 and received[0].object_id == sent.object_id
    back = received[0]
    assert to_plain(back) == to_plain(sent)
    # explicit spot checks of the tricky fields
    assert len(back.proposals) == 3
    assert [len(p.joint_names) for p in back.proposals] == [24, 16, 0]
    for got, want in zip(back.proposals, sent.proposals):
        assert list(got.grasp.joint_positions) == list(want.grasp.joint_positions)
        assert list(got.squeeze.joint_positions) == list(want.squeeze.joint_positions)
        assert got.pregrasp.wrist_pose == want.pregrasp.wrist_pose
        assert got.score == want.score
    assert math.isnan(back.proposals[1].energy)
    assert back.proposals[0].energy == -12.5
    assert back.header.stamp.nanosec == 123_456_789


def test_domain_is_private(ros: RosHarness, peer: Peer) -> None:
    """Only this process and its own peers are on the test topics (domain isolation works)."""

    def endpoint_nodes() -> set[str]:
        endpoints = (ros.node.get_subscriptions_info_by_topic(ECHO_IN)
                     + ros.node.get_publishers_info_by_topic(ECHO_OUT)
                     + ros.node.get_publishers_info_by_topic(ACTION + "/_action/feedback"))
        return {e.node_name for e in endpoints}

    # DDS discovers endpoints before the node names (ros_discovery_info) arrive: wait for both
    ros.spin_until(lambda: bool(endpoint_nodes()) and UNKNOWN_NODE not in endpoint_nodes(),
                   "named peer endpoints in the graph", peer)
    foreign = sorted(n for n in endpoint_nodes()
                     if n != ros.node.get_name() and not n.startswith(PEER_NAME_PREFIX))
    assert not foreign, \
        f"nodes of another process in ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}: {foreign}"
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


def _run_goal(ros: RosHarness, peer: Peer, client: ActionClient, goal: ExecuteGrasp.Goal,
              ) -> tuple[Any, list[ExecuteGrasp.Feedback]]:
    """Send ``goal``; returns (goal handle, feedback received), result not yet requested."""
    feedback: list[ExecuteGrasp.Feedback] = []
    future = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    ros.spin_until(future.done, "goal response", peer)
    return future.result(), feedback


@pytest.fixture(scope="module")
def action_client(ros: RosHarness, peer: Peer) -> Iterator[ActionClient]:
    """An ExecuteGrasp client connected to the peer's server."""
    client = ActionClient(ros.node, ExecuteGrasp, ACTION)
    try:
        ros.spin_until(client.server_is_ready, "ExecuteGrasp server", peer)
        yield client
    finally:
        client.destroy()


@pytest.mark.parametrize("dry_run", [False, True], ids=["execute", "dry_run"])
def test_execute_grasp_round_trip(ros: RosHarness, peer: Peer, action_client: ActionClient,
                                  dry_run: bool) -> None:
    """Goal reaches the server intact; feedback arrives in stage order; result matches goal."""
    goal = ExecuteGrasp.Goal(object_id=OBJECT_ID, target_prompt="0.5 -0.1 0.02",
                             proposal_policy="", dry_run=dry_run, lift_height=0.15)
    handle, feedback = _run_goal(ros, peer, action_client, goal)
    assert handle.accepted
    result_future = handle.get_result_async()
    ros.spin_until(result_future.done, "ExecuteGrasp result", peer)
    F = ExecuteGrasp.Feedback
    expected_stages = [F.STAGE_PERCEIVE, F.STAGE_PROPOSE, F.STAGE_PLAN]
    if not dry_run:
        expected_stages += [F.STAGE_REACH, F.STAGE_PRESHAPE, F.STAGE_APPROACH, F.STAGE_SQUEEZE,
                            F.STAGE_LIFT, F.STAGE_VERIFY, F.STAGE_DONE]
    # feedback (a topic) and the result (a service) travel separately: wait for the stragglers
    ros.spin_until(lambda: len(feedback) >= len(expected_stages), "all feedback", peer, 5.0)
    assert [fb.stage for fb in feedback] == expected_stages
    assert all(fb.message == f"{fb.stage} {OBJECT_ID}" for fb in feedback)
    progress = [fb.progress for fb in feedback]
    assert progress == sorted(progress) and 0.0 < progress[0] and progress[-1] <= 1.0
    if not dry_run:
        assert progress[-1] == pytest.approx(1.0)

    result = result_future.result().result
    assert result.success is (not dry_run)
    assert result.stage_reached == expected_stages[-1]
    assert result.reason == (f"object_id={OBJECT_ID} target_prompt=0.5 -0.1 0.02 "
                             f"proposal_policy=best_reachable dry_run={dry_run} lift_height=0.15")
    assert [t.stage for t in result.timings] == expected_stages
    assert all(t.duration_s >= 0.0 for t in result.timings)
    assert result.proposal.id == f"{OBJECT_ID}-p0"
    assert result.proposal.method == "best_reachable"
    assert len(result.proposal.joint_names) == 16
    joints = list(result.proposal.grasp.joint_positions)
    assert joints == pytest.approx([0.1 * i for i in range(16)])
    assert result.proposal.grasp.wrist_pose.position.z == pytest.approx(0.15)
    assert math.isnan(result.proposal.energy)


def test_execute_grasp_rejected(ros: RosHarness, peer: Peer, action_client: ActionClient) -> None:
    """The server rejects an invalid goal and the client sees ``accepted == False``."""
    goal = ExecuteGrasp.Goal(object_id=OBJECT_ID, proposal_policy="reject-me")
    handle, feedback = _run_goal(ros, peer, action_client, goal)
    assert handle.accepted is False
    assert feedback == []


@pytest.mark.parametrize("how", ["shutdown topic", "SIGINT"])
def test_peer_exits_cleanly(ros: RosHarness, tmp_path: Path, how: str) -> None:
    """A fresh peer leaves with status 0 on the shutdown topic or SIGINT; no process is left."""
    peer = start_peer(ros, tmp_path)
    try:
        ros.spin_until(lambda: "READY" in peer.output(), "ros_peer to start", peer)
        if how == "SIGINT":
            peer.proc.send_signal(signal.SIGINT)
            peer.proc.wait(timeout=EXIT_TIMEOUT_S)
        else:  # discovery of a fresh process can take one announcement period (~3 s)
            ros.spin_until(lambda: peer.shutdown_pub.get_subscription_count() > 0,
                           "peer shutdown subscription", peer)
        status, stopped_by = peer.stop()
    finally:
        if peer.proc.poll() is None:
            peer.proc.kill()
            peer.proc.wait(timeout=EXIT_TIMEOUT_S)
    expected_stop = "shutdown topic" if how == "shutdown topic" else "already exited"
    assert (status, stopped_by) == (0, expected_stop), peer.output()
    assert f"EXIT {'shutdown topic' if how == 'shutdown topic' else 'signal'}" in peer.output()
    with pytest.raises(ProcessLookupError):
        os.kill(peer.proc.pid, 0)  # reaped by wait(): no such process, no zombie, no orphan
