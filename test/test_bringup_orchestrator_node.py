"""The orchestrator node against a fake world (in this process): services of perception, proposal
and planning that answer with canned messages, a joint-state publisher standing in for the
drivers (the arm never moves), and recorders on the drivers' command topics.

What it pins down without the simulation: a missing node is reported by name; dry runs stop
after planning; an unknown proposal policy is refused; the operator confirmation (on for this
node) gates every motion and a refusal sends nothing; a second goal is rejected while one runs;
the planned reach is slowed to ``speed_scale`` x the velocity limits on the same path, the hand
targets are streamed to LEAP's JointState driver in its convention, and an arm that does not
follow fails the reach and gets a hold command at its measured position; the planner gets the
measured start state and the perceived scene above the table as obstacles.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

from conftest import require_built_interfaces  # noqa: E402

require_built_interfaces()
import rclpy  # noqa: E402

from action_msgs.msg import GoalStatus  # noqa: E402
from geometry_msgs.msg import Point32, PolygonStamped  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import JointState, PointCloud2  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from dex_description.config import load_robot_config  # noqa: E402
from dex_description.drivers import arm_map, hand_command_map, hand_state_map  # noqa: E402
from dex_interfaces.action import ExecuteGrasp  # noqa: E402
from dex_interfaces.msg import GraspProposal  # noqa: E402
from dex_interfaces.srv import PlanToProposals, ProposeGrasps, SegmentObject  # noqa: E402
from dex_perception.msgs import XYZ, cloud_arrays, cloud_msg  # noqa: E402

ROBOT = "ur5e_leap"
SPEED_SCALE = 0.5
REACH_DELTA = 0.6  # [rad] the fake plan turns shoulder_pan by this much ...
REACH_TIME = 0.2  # [s] ... in this time: 3 rad/s, above 0.5 x 3.1416 rad/s
CFG = load_robot_config(ROBOT)
HOME = np.asarray(CFG.arm.named_poses["home"], dtype=float)
PRESHAPE = np.asarray(CFG.hand.named_poses["pre_shape"], dtype=float)


def _t(p) -> float:
    return p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec


class FakeWorld:
    """Joint states (arm at home, hand open), recorders, and the three services on demand."""

    def __init__(self):
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("fake_world", context=self.context)
        self.lock = threading.Lock()
        self.arm_cmds: list[JointTrajectory] = []
        self.hand_cmds: list[JointState] = []
        self.requests: dict[str, list] = {"segment": [], "propose": [], "plan": []}
        self.services: list = []
        self.amap, self.hmap = arm_map(CFG), hand_state_map(CFG.hand)
        self.hcmd = hand_command_map(CFG.hand)
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_js = self.node.create_publisher(JointState, "/joint_states", reliable)
        self.pub_scene = self.node.create_publisher(PointCloud2, "/dex/scene_cloud", self.latched)
        self.pub_table = self.node.create_publisher(PolygonStamped, "/dex/table", self.latched)
        self.node.create_subscription(JointTrajectory, CFG.arm.driver.command_topic, self._rec(self.arm_cmds), reliable)
        self.node.create_subscription(JointState, CFG.hand.driver.command_topic, self._rec(self.hand_cmds), reliable)
        self.node.create_timer(0.02, self._publish_state)
        self.action = ActionClient(self.node, ExecuteGrasp, "/dex/execute_grasp", callback_group=ReentrantCallbackGroup())
        self.confirm = self.node.create_client(SetBool, "/dex/confirm_motion", callback_group=ReentrantCallbackGroup())
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _rec(self, store):
        def cb(msg):
            with self.lock:
                store.append(msg)
        return cb

    def _publish_state(self):
        hand = self.hmap.to_driver(np.zeros(len(CFG.hand.joints)), CFG.hand.joints)
        arm = self.amap.to_driver(HOME, CFG.arm.joints)
        msg = JointState(name=list(self.amap.names) + list(self.hmap.names),
                         position=[float(v) for v in np.concatenate([arm, hand])],
                         velocity=[0.0] * (len(arm) + len(hand)))
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub_js.publish(msg)

    def serve(self):
        """Start the three services (idempotent)."""
        if self.services:
            return
        group = ReentrantCallbackGroup()
        self.services = [
            self.node.create_service(SegmentObject, "/dex/segment_object", self._segment, callback_group=group),
            self.node.create_service(ProposeGrasps, "/dex/propose_grasps", self._propose, callback_group=group),
            self.node.create_service(PlanToProposals, "/dex/plan_to_proposals", self._plan, callback_group=group),
        ]

    def unserve(self):
        """Stop the services (as if their nodes died)."""
        for srv in self.services:
            self.node.destroy_service(srv)
        self.services = []

    def _segment(self, req, res):
        self.requests["segment"].append(req)
        header = PointCloud2().header
        header.frame_id = "base_link"
        header.stamp = self.node.get_clock().now().to_msg()
        pts = np.array([[0.0, 0.6, 0.05], [0.02, 0.6, 0.06], [0.0, 0.62, 0.07]])
        # perception publishes the scene (table + objects) and the table of the same frame
        scene = np.vstack([pts, [[0.3, 0.5, 0.002], [-0.3, 0.7, -0.003], [0.2, 0.4, 0.12]]])
        self.pub_scene.publish(cloud_msg(header, scene))
        table = PolygonStamped(header=header)
        table.polygon.points = [Point32(x=x, y=y, z=0.0) for x, y in ((-0.5, 0.2), (0.5, 0.2), (0.5, 1.0), (-0.5, 1.0))]
        self.pub_table.publish(table)
        res.success, res.status, res.message, res.num_objects = True, "ok", "1 object", 1
        res.object_cloud = cloud_msg(header, pts, np.tile([0.0, 0.0, 1.0], (3, 1)))
        return res

    def _propose(self, req, res):
        self.requests["propose"].append(req)
        p = GraspProposal(id="fake-0", hand_name=CFG.hand.name, method="fake", wrist_frame=CFG.hand.root_body,
                          joint_names=list(CFG.hand.joints), score=1.0, energy=0.0)
        for k, state in enumerate((p.pregrasp, p.grasp, p.squeeze)):
            state.wrist_pose.position.x, state.wrist_pose.position.y = 0.0, 0.6
            state.wrist_pose.position.z = 0.3 - 0.05 * k
            state.wrist_pose.orientation.w = 1.0
            state.joint_positions = [float(v) for v in PRESHAPE * (1 + 0.2 * k)]
        res.success, res.status, res.message = True, "ok", "1 proposal"
        res.proposals.header.frame_id = "base_link"
        res.proposals.proposals = [p]
        return res

    def _plan(self, req, res):
        self.requests["plan"].append(req)
        names = list(self.amap.names)
        arm = JointTrajectory(joint_names=names)
        t = np.linspace(0.0, REACH_TIME, 11)
        for tk in t:
            q = HOME.copy()
            q[0] += REACH_DELTA * tk / REACH_TIME
            v = np.zeros(6)
            v[0] = REACH_DELTA / REACH_TIME
            pt = JointTrajectoryPoint(positions=[float(x) for x in q], velocities=[float(x) for x in v],
                                      accelerations=[0.0] * 6)
            pt.time_from_start.nanosec = int(round(tk * 1e9))
            arm.points.append(pt)
        hand = JointTrajectory(joint_names=list(self.hcmd.names))
        for tk, q in ((0.0, np.zeros(len(PRESHAPE))), (REACH_TIME, PRESHAPE)):
            pt = JointTrajectoryPoint(positions=[float(x) for x in self.hcmd.to_driver(q, CFG.hand.joints)])
            pt.time_from_start.nanosec = int(round(tk * 1e9))
            hand.points.append(pt)
        res.success, res.status, res.message = True, "ok", "fake plan"
        res.proposal_index = 0
        res.proposal = req.proposals.proposals[0]
        res.arm_trajectory, res.hand_trajectory = arm, hand
        return res

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.executor.shutdown(timeout_sec=1)
        self.action.destroy()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _wait(future, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not future.done():
        assert proc.poll() is None, "the orchestrator died"
        assert time.monotonic() < deadline, "no answer"
        time.sleep(0.02)
    return future.result()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    log = tmp_path_factory.mktemp("orchestrator") / "orchestrator.log"
    world = FakeWorld()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dex_bringup.orchestrator", "--ros-args", "-p", f"robot:={ROBOT}",
             "-p", "require_confirm:=true", "-p", f"speed_scale:={SPEED_SCALE}", "-p", "settle_s:=0.5",
             "-p", "timeout_confirm_s:=20.0", "-p", "service_wait_s:=10.0"], stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 120
        while not world.action.wait_for_server(timeout_sec=0.5):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
        yield world, proc, log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        world.close()
    assert code == 0, Path(log).read_text()[-3000:]


def _run(world, proc, goal: ExecuteGrasp.Goal, on_feedback=None, timeout=60.0):
    handle = _wait(world.action.send_goal_async(goal, feedback_callback=on_feedback), proc)
    assert handle.accepted
    return handle, _wait(handle.get_result_async(), proc, timeout)


@pytest.fixture
def served(rig):
    """The rig with the services up (pytest-xdist may run any test of this file first)."""
    rig[0].serve()
    return rig


def test_a_missing_node_is_named(rig):
    world, proc, _ = rig
    world.unserve()
    _, wrapped = _run(world, proc, ExecuteGrasp.Goal())
    assert wrapped.status == GoalStatus.STATUS_ABORTED
    r = wrapped.result
    assert not r.success and r.stage_reached == "perceive"
    assert "node 'dex_perception' is not responding" in r.reason and "/dex/segment_object" in r.reason, r.reason
    world.serve()  # from here on the services answer


def test_dry_run_plans_and_sends_nothing(served):
    world, proc, _ = served
    n_arm = len(world.arm_cmds)
    stages = []
    _, wrapped = _run(world, proc, ExecuteGrasp.Goal(dry_run=True, target_prompt="nearest", object_id="mug"),
                      lambda fb: stages.append(fb.feedback.stage))
    r = wrapped.result
    assert wrapped.status == GoalStatus.STATUS_SUCCEEDED and r.success, r.reason
    assert r.stage_reached == "plan" and "dry run" in r.reason and r.proposal.id == "fake-0"
    assert [t.stage for t in r.timings] == ["perceive", "propose", "plan"]
    assert stages == ["perceive", "propose", "plan"]
    assert world.requests["segment"][-1].prompt == "nearest"
    assert world.requests["propose"][-1].max_proposals == 16  # the top_k parameter
    plan = world.requests["plan"][-1]
    assert plan.proposals.object_id == "mug"
    # measured start state in model names; obstacles = the scene above the table (not the table)
    start = dict(zip(plan.start_state.name, plan.start_state.position))
    assert np.allclose([start[j] for j in CFG.arm.joints], HOME, atol=1e-6)
    obstacles = cloud_arrays(plan.obstacle_cloud, XYZ)
    assert len(obstacles) == 4 and obstacles[:, 2].min() > 0.01, obstacles
    time.sleep(0.3)
    assert len(world.arm_cmds) == n_arm, "a dry run moved the arm"


def test_unknown_policy_is_refused(served):
    world, proc, _ = served
    _, wrapped = _run(world, proc, ExecuteGrasp.Goal(proposal_policy="most_expensive"))
    assert wrapped.status == GoalStatus.STATUS_ABORTED
    assert "unknown proposal_policy 'most_expensive'" in wrapped.result.reason


def _confirm_when_asked(world, answer: bool, asked: list):
    def on_feedback(fb):
        if "/dex/confirm_motion" in fb.feedback.message and not asked:
            asked.append(fb.feedback.message)
            threading.Thread(target=lambda: world.confirm.call(SetBool.Request(data=answer), timeout_sec=10),
                             daemon=True).start()
    return on_feedback


def test_refused_confirmation_moves_nothing_and_one_goal_at_a_time(served):
    world, proc, _ = served
    n_arm, n_hand = len(world.arm_cmds), len(world.hand_cmds)
    waiting = threading.Event()
    handle = _wait(world.action.send_goal_async(
        ExecuteGrasp.Goal(), feedback_callback=lambda fb: waiting.set() if "confirm_motion" in fb.feedback.message else None),
        proc)
    assert handle.accepted
    assert waiting.wait(60), "no confirmation request in the feedback"
    second = _wait(world.action.send_goal_async(ExecuteGrasp.Goal(dry_run=True)), proc)
    assert not second.accepted, "a second goal was accepted while one runs"
    res = world.confirm.call(SetBool.Request(data=False), timeout_sec=10)
    assert res is not None and res.success, res
    wrapped = _wait(handle.get_result_async(), proc)
    assert wrapped.status == GoalStatus.STATUS_ABORTED and "not confirmed" in wrapped.result.reason
    assert [t.stage for t in wrapped.result.timings][-1] == "confirm"
    time.sleep(0.3)
    assert (len(world.arm_cmds), len(world.hand_cmds)) == (n_arm, n_hand), "motion sent without confirmation"
    nothing = world.confirm.call(SetBool.Request(data=True), timeout_sec=10)
    assert nothing is not None and not nothing.success  # nothing waits for confirmation now


def test_confirmed_reach_is_slowed_and_stopped_when_the_arm_does_not_follow(served):
    world, proc, _ = served
    n_arm, n_hand = len(world.arm_cmds), len(world.hand_cmds)
    asked: list = []
    _, wrapped = _run(world, proc, ExecuteGrasp.Goal(), _confirm_when_asked(world, True, asked))
    r = wrapped.result
    assert asked and wrapped.status == GoalStatus.STATUS_ABORTED, (wrapped.status, r.reason)
    assert r.stage_reached == "reach" and "the arm ended 0.600 rad from its target" in r.reason, r.reason
    assert r.proposal.id == "fake-0"
    deadline = time.monotonic() + 5.0  # the hold is published just before the result: it may arrive after it
    while time.monotonic() < deadline:
        with world.lock:
            if len(world.arm_cmds) >= n_arm + 2:
                break
        time.sleep(0.05)
    with world.lock:
        arm = world.arm_cmds[n_arm:]
        hand = world.hand_cmds[n_hand:]
    reach, hold = arm[0], arm[-1]
    assert len(arm) == 2 and len(hold.points) == 1
    # the reach: same path, at most speed_scale x the velocity limit, no t = 0 point
    vmax = max(abs(v) for p in reach.points for v in p.velocities)
    limit = SPEED_SCALE * CFG.arm.velocity_limits[0]
    assert vmax == pytest.approx(limit, rel=1e-6)
    assert _t(reach.points[-1]) == pytest.approx(REACH_TIME * (REACH_DELTA / REACH_TIME) / limit, rel=1e-6)
    assert _t(reach.points[0]) > 0 and len(reach.points) == 10
    assert reach.points[-1].positions[0] == pytest.approx(HOME[0] + REACH_DELTA)
    # the hold: where the arm is (home), no motion
    assert np.allclose(hold.points[0].positions, HOME, atol=1e-6) and not any(hold.points[0].velocities)
    # LEAP: streamed JointState targets in its convention (+pi), toward the pre-shape, then the hold
    hcmd = hand_command_map(CFG.hand)
    assert len(hand) >= 3 and all(list(m.name) == list(hcmd.names) for m in hand)
    target = hcmd.to_driver(PRESHAPE, CFG.hand.joints)
    assert np.allclose(hand[-2].position, target, atol=1e-6)
    assert np.allclose(hand[-1].position, hcmd.to_driver(np.zeros(len(PRESHAPE)), CFG.hand.joints), atol=1e-6)
    assert proc.poll() is None
