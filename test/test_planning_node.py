"""The planning node as a subprocess (``/dex/plan_to_proposals``, ``/joint_states``, ``/dex/markers``)
and the message conversions it uses.

Skips when rclpy or the built dex_interfaces is missing. Domain isolation comes from
test/conftest.py; every wait is bounded by :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

from conftest import require_built_interfaces  # noqa: E402

require_built_interfaces("srv", "PlanToProposals")
import rclpy  # noqa: E402

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from dex_description.compose import load_robot  # noqa: E402
from dex_interfaces.msg import GraspProposal, ProposalRejection  # noqa: E402
from dex_interfaces.srv import PlanToProposals  # noqa: E402
from dex_planning import msgs as conv  # noqa: E402
from dex_planning.cpu import CpuPlanner  # noqa: E402
from dex_planning.interface import Trajectory  # noqa: E402

TIMEOUT_S = 60.0
REPO_ROOT = Path(__file__).resolve().parent.parent
ROBOT = "ur5e_leap"


@contextlib.contextmanager
def start_node(tmp: Path, params: dict[str, str]):
    args = []
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    log = tmp / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dex_planning.node", "--ros-args", *args],
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
        self.node = Node("planning_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.markers: list[MarkerArray] = []
        self.node.create_subscription(MarkerArray, "/dex/markers", self.markers.append, latched)
        self.pub_js = self.node.create_publisher(JointState, "/joint_states", 10)
        self.cli = self.node.create_client(PlanToProposals, "/dex/plan_to_proposals")

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def call(self, req, proc) -> PlanToProposals.Response:
        deadline = time.monotonic() + TIMEOUT_S
        while not self.cli.service_is_ready():
            assert proc.poll() is None, "planning node died"
            assert time.monotonic() < deadline, "service /dex/plan_to_proposals never appeared"
            self.spin(0.1)
        future = self.cli.call_async(req)
        while not future.done():
            assert proc.poll() is None, "planning node died"
            assert time.monotonic() < deadline, "no answer from /dex/plan_to_proposals"
            self.executor.spin_once(timeout_sec=0.05)
        return future.result()

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture(scope="module")
def robot():
    return load_robot(ROBOT)


@pytest.fixture(scope="module")
def local_planner(robot):
    return CpuPlanner(robot)


def _proposal(robot, world_T_root, hand_q, pid) -> GraspProposal:
    import mujoco

    p = GraspProposal()
    p.id, p.hand_name, p.wrist_frame = pid, robot.cfg.hand.name, robot.cfg.hand.root_body
    p.joint_names = list(robot.cfg.hand.joints)
    pose = p.pregrasp.wrist_pose
    pose.position.x, pose.position.y, pose.position.z = (float(x) for x in world_T_root[:3, 3])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(world_T_root[:3, :3]).reshape(9))
    pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (float(x) for x in quat)
    p.pregrasp.joint_positions = [float(x) for x in hand_q]
    return p


def _request(robot, planner, proposals, start=True) -> PlanToProposals.Request:
    req = PlanToProposals.Request()
    req.proposals.header.frame_id = "base_link"
    req.proposals.proposals = proposals
    if start:
        req.start_state.name = list(robot.cfg.arm.joints) + list(robot.cfg.hand.joints)
        req.start_state.position = [float(x) for x in np.concatenate([planner.home, robot.cfg.hand.named_poses["open"]])]
    return req


def _targets(robot, planner):
    pre = np.asarray(robot.cfg.hand.named_poses["pre_shape"])
    q_goal = planner.home + np.array([0.4, 0.3, -0.4, 0.2, 0.3, 0.6])
    good = planner.flange_pose(q_goal) @ robot.cfg.flange_T_root.matrix()
    far = np.eye(4)
    far[:3, 3] = [2.5, 2.5, 0.5]
    nan = _proposal(robot, good, pre, "nan")
    nan.pregrasp.wrist_pose.position.x = math.nan
    return [nan, _proposal(robot, far, pre, "far"), _proposal(robot, good, pre, "good")], good, pre


def test_plan_to_proposals_end_to_end(tmp_path, robot, local_planner):
    with start_node(tmp_path, {"robot": ROBOT}) as (proc, log):
        client = Client()
        try:
            props, good, pre = _targets(robot, local_planner)
            res = client.call(_request(robot, local_planner, props), proc)
            assert res.success and res.status == "ok", res.message
            assert res.proposal_index == 2 and res.proposal.id == "good"
            reasons = [(r.index, r.reason) for r in res.rejections]
            assert reasons == [(0, ProposalRejection.REASON_INVALID), (1, ProposalRejection.REASON_NO_IK)]
            arm, hand = res.arm_trajectory, res.hand_trajectory
            assert list(arm.joint_names) == list(robot.cfg.arm.driver.joints[i].name for i in range(6))
            times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in arm.points]
            assert times[0] == 0.0 and np.all(np.diff(times) > 0)
            assert np.allclose(arm.points[0].positions, local_planner.home, atol=1e-9)
            reached = local_planner.flange_pose(np.array(arm.points[-1].positions)) @ robot.cfg.flange_T_root.matrix()
            assert np.abs(reached[:3, 3] - good[:3, 3]).max() < 1e-4
            assert all(len(p.velocities) == 6 and len(p.accelerations) == 6 for p in arm.points)
            vmax = np.abs([p.velocities for p in arm.points]).max(axis=0)
            assert np.all(vmax <= robot.cfg.arm.velocity_limits + 1e-9)
            # hand: LEAP driver names "0".."15", +pi offset, ends at the pre-shape with the arm
            assert list(hand.joint_names) == [str(i) for i in range(16)]
            by_name = dict(zip(hand.joint_names, hand.points[-1].positions))
            for dj in robot.cfg.hand.driver.joints:
                assert by_name[dj.name] == pytest.approx(dj.scale * pre[robot.cfg.hand.joints.index(dj.joint)] + dj.offset)
            t_hand = hand.points[-1].time_from_start
            assert (t_hand.sec, t_hand.nanosec) == (arm.points[-1].time_from_start.sec, arm.points[-1].time_from_start.nanosec)
            # the path on /dex/markers
            deadline = time.monotonic() + TIMEOUT_S
            while not any(m.ns == "plan" and m.type == Marker.LINE_STRIP for a in client.markers for m in a.markers):
                assert time.monotonic() < deadline, "no path markers"
                client.spin(0.1)
            line = [m for a in client.markers for m in a.markers if m.ns == "plan" and m.type == Marker.LINE_STRIP][-1]
            assert line.header.frame_id == "base_link" and len(line.points) >= 10
            end = line.points[-1]
            assert np.abs(np.array([end.x, end.y, end.z]) - good[:3, 3]).max() < 1e-3
            # malformed requests: typed answers, never a trajectory, the node keeps serving
            bad = _request(robot, local_planner, props)
            bad.start_state.position[0] = math.nan
            r = client.call(bad, proc)
            assert not r.success and r.status == "invalid_request" and not r.arm_trajectory.points
            wrong_frame = _request(robot, local_planner, props)
            wrong_frame.proposals.header.frame_id = "camera_color_optical_frame"
            r = client.call(wrong_frame, proc)
            assert r.status == "invalid_request" and "frame" in r.message
            only_bad = _request(robot, local_planner, props[:2])
            r = client.call(only_bad, proc)
            assert r.status == "no_feasible_proposal" and len(r.rejections) == 2 and not r.arm_trajectory.points
            r = client.call(_request(robot, local_planner, props), proc)
            assert r.success and proc.poll() is None
        finally:
            client.close()


def test_start_state_from_joint_states(tmp_path, robot, local_planner):
    with start_node(tmp_path, {"robot": ROBOT}) as (proc, log):
        client = Client()
        try:
            props, _, _ = _targets(robot, local_planner)
            r = client.call(_request(robot, local_planner, props, start=False), proc)
            assert r.status == "invalid_request" and "no start state" in r.message
            # arm by model names, hand by the LEAP driver's state names (+pi offset)
            js = JointState(header=Header(frame_id="base_link"))
            js.name = list(robot.cfg.arm.joints) + [d.name for d in robot.cfg.hand.driver.joints]
            js.position = [float(x) for x in local_planner.home] + [float(d.offset) for d in robot.cfg.hand.driver.joints]
            deadline = time.monotonic() + TIMEOUT_S
            while client.pub_js.get_subscription_count() == 0:
                assert time.monotonic() < deadline, "node never subscribed to /joint_states"
                client.spin(0.1)
            for _ in range(5):
                client.pub_js.publish(js)
                client.spin(0.1)
            r = client.call(_request(robot, local_planner, props, start=False), proc)
            assert r.success, r.message
            assert np.allclose(r.arm_trajectory.points[0].positions, local_planner.home, atol=1e-9)
        finally:
            client.close()


# --------------------------------------------------------------------------- conversions


def test_shadow_hand_trajectory_uses_actuated_names():
    shadow = load_robot("ur10e_shadow")
    hand = shadow.cfg.hand
    q = np.linspace(0, 1, 3)[:, None] * np.asarray(hand.named_poses["pre_shape"])[None]
    traj = Trajectory(tuple(hand.joints), np.array([0.0, 0.5, 1.0]), q, np.zeros_like(q), np.zeros_like(q))
    msg = conv.hand_trajectory_msg(shadow, traj, Header(frame_id="base_link"), 0.5)
    assert list(msg.joint_names) == list(hand.actuated_names) and len(msg.joint_names) == 20
    last = dict(zip(msg.joint_names, msg.points[-1].positions))
    pre = dict(zip(hand.joints, hand.named_poses["pre_shape"]))
    assert last["rh_FFJ0"] == pytest.approx(pre["rh_FFJ1"] + pre["rh_FFJ2"])
    assert last["rh_THJ4"] == pytest.approx(pre["rh_THJ4"])


def test_joint_values_conversions(robot):
    arm, hand = conv.joint_values(robot, ["shoulder_pan_joint", "0", "1"], [0.5, math.pi + 0.1, math.pi + 0.2])
    assert arm == {"shoulder_pan_joint": 0.5}
    assert hand["if_rot"] == pytest.approx(0.1) and hand["if_mcp"] == pytest.approx(0.2)
    with pytest.raises(Exception, match="unknown"):
        conv.joint_values(robot, ["nope"], [0.0])
    with pytest.raises(Exception, match="NaN"):
        conv.joint_values(robot, ["shoulder_pan_joint"], [math.nan])
    with pytest.raises(Exception, match="no value"):
        conv.vector(robot.cfg.arm.joints, arm, "start")
    props = conv.proposals_from_msg(robot, _request(robot, CpuPlanner(robot), []).proposals, "base_link")
    assert props == []


def test_rejection_reasons_and_statuses_match_the_interface():
    """Every reason the planner can give is a ProposalRejection constant, and every request status
    is listed in PlanToProposals.srv (a renamed string would otherwise reach clients unnoticed)."""
    from dex_planning import interface

    constants = {v for k, v in vars(ProposalRejection).items() if k.startswith("REASON_") and isinstance(v, str)}
    assert set(interface.REASONS) == constants
    srv_text = (REPO_ROOT / "src" / "dex_interfaces" / "srv" / "PlanToProposals.srv").read_text()
    statuses = [v for k, v in vars(interface).items() if k.startswith("STATUS_")]
    assert len(statuses) == 6
    for status in statuses:
        assert f'"{status}"' in srv_text, status
