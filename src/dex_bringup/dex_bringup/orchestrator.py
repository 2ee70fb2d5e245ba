"""``orchestrator`` node (``dex_orchestrator``): the grasp episode as the ROS action
``/dex/execute_grasp`` (dex_interfaces/action/ExecuteGrasp).

It runs :class:`dex_bringup.episode.GraspEpisode` (perceive -> propose -> plan -> [confirm] -> reach
-> preshape -> approach -> squeeze -> lift -> verify) over :class:`RosPorts`, which do the work of
:class:`dex_bringup.sim_episode.SimPorts` through the nodes and the drivers' topics:

* perceive: ``/dex/segment_object`` (dex_perception; prompt = the goal's ``target_prompt`` or the
  ``prompt`` parameter) on a depth frame taken after the stage started; the obstacle cloud for
  planning is perception's ``/dex/scene_cloud`` of the same frame minus the table (``/dex/table``)
  and minus the robot itself (its collision spheres at the measured joints, ``self_filter_margin``),
  or the object cloud when that scene cloud does not arrive within ``scene_wait_s``;
* propose: ``/dex/propose_grasps`` (dex_proposal) on that object cloud;
* plan: ``/dex/plan_to_proposals`` (dex_planning) with the measured start state;
* confirm (``require_confirm``, the real robot): the node serves ``/dex/confirm_motion``
  (std_srvs/SetBool): ``data: true`` executes the planned motion, ``false`` ends the goal (not
  confirmed); feedback (stage ``plan``) says that it is waiting; ``timeout_confirm_s`` bounds it;
* reach: the planned arm trajectory (one ``trajectory_msgs/JointTrajectory`` with positions,
  velocities and accelerations, slowed uniformly to at most ``speed_scale`` x the arm's velocity
  limits) on the arm driver's topic, and the planned hand pre-shaping on the hand driver's topic;
* approach / squeeze / lift: :class:`dex_policy.executor.OpenLoopExecutor` segments (computed from
  the measured state; already safety-checked: joint and velocity limits, the workspace box) as one
  arm JointTrajectory (positions + velocities) each and hand targets;
* verify: after holding the lifted object ``verify_hold_s``, on one frame taken after the hold
  (perception's workspace box raised by ``verify_extra_height`` for that request): perception no
  longer finds an object at the target's perceived centroid (prompt ``point x y z``), and either
  at least ``min_held_points`` scene points that are neither the table nor the robot lie within
  ``held_radius`` of where the object should be if it went up with the hand
  (:func:`dex_bringup.orchestration.held_object_points`) or the measured fingers are held short of
  the squeeze target (:func:`dex_policy.executor.fingers_blocked`: an object hidden behind the
  hand); :func:`dex_bringup.orchestration.verify_verdict`, the same rule as the in-process
  simulated episode.

Drivers (robot YAML ``driver`` sections; names and offsets by :mod:`dex_description.drivers`):
arm on ``arm.driver.command_topic`` (UR: ``/scaled_joint_trajectory_controller/joint_trajectory``);
hand on ``hand.driver.command_topic``: a ``sensor_msgs/JointState`` driver (LEAP ``/cmd_leap``)
gets targets streamed at ``control_rate_hz``, a ``JointTrajectory`` driver (Shadow
``/shadow_hand/joint_trajectory``) one trajectory per segment. Trajectories start "now" (zero
header stamp) and leave out a ``t = 0`` point, so the controllers start from their own state. The
end of every segment is awaited on the state topics (``arm.driver.state_topic``, ``/joint_states``,
and ``hand.driver.state_topic``) with ``track_tol`` / ``settle_s``; joint states older than
``state_timeout_s`` fail the stage as a silent driver.

Cancel (or a failing motion stage, or the node being stopped with SIGINT/SIGTERM): the arm and
the hand get a hold trajectory / target at their measured positions (reached in ``hold_s``), and
the goal ends cancelled (aborted for failures). Results: success, the last stage, a reason
(failures name a silent node as ``node 'dex_perception' is not responding: ...``), per-stage
timings (StageTiming [s]) and the executed proposal. Failed goals end ABORTED, cancelled ones
CANCELED, successes SUCCEEDED; one goal at a time (others are rejected while one runs).

A node that is not running is reported by name (``NodeUnavailable``); nothing is cached between
goals except the service clients, so the next goal works once the node is back. No message or
failing service can stop this node; a bad parameter makes every goal fail with the reason.

Parameters: see :class:`dex_bringup.orchestration.OrchestratorSettings` (``robot``, ``executor``,
``prompt``, ``speed_scale``, ``require_confirm``, ``lift_height`` [m], ``workspace_min`` /
``workspace_max`` [m] (base frame), ``top_k``, ``proposal_seed``, ``max_attempts``, ``plan_budget_s``,
``control_rate_hz``, ``track_tol`` [rad], ``settle_s``, ``preshape_tol`` [rad], ``hold_s``,
``state_timeout_s``, ``service_wait_s``, ``scene_wait_s``, ``table_clearance`` [m], ``self_filter_margin`` [m],
``timeout_<stage>_s``).

Run: ``python -m dex_bringup.orchestrator --ros-args -p robot:=ur5e_leap`` (in the graph:
``dexgrasp launch sim|real``); one goal: ``dexgrasp episode`` (:mod:`dex_bringup.episode_client`).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dex_bringup.episode import Cancelled, GraspEpisode, Goal, NodeUnavailable, StageFailed, attempt_seed
from dex_bringup.orchestration import (
    OrchestratorSettings,
    SelfFilter,
    hand_shape_error,
    held_object_points,
    obstacle_points,
    parameter_defaults,
    reach_stretch,
    retime,
    sample_at,
    settings_from_parameters,
    table_height,
    tracking_error,
    verify_verdict,
)

NODE_NAME = "dex_orchestrator"
ACTION = "/dex/execute_grasp"
CONFIRM_SERVICE = "/dex/confirm_motion"
SEGMENT_SERVICE = "/dex/segment_object"
PROPOSE_SERVICE = "/dex/propose_grasps"
PLAN_SERVICE = "/dex/plan_to_proposals"
SCENE_TOPIC = "/dex/scene_cloud"
TABLE_TOPIC = "/dex/table"
SERVICE_NODES = {SEGMENT_SERVICE: "dex_perception", PROPOSE_SERVICE: "dex_proposal", PLAN_SERVICE: "dex_planning"}
SUPPORTED_POLICIES = ("best_reachable",)


@dataclass
class Perceived:
    """The perceive stage's output.

    Attributes:
        cloud: The object cloud (sensor_msgs/PointCloud2, x y z + normals, base frame).
        centroid: (3,) [m] mean of the object points, base frame.
        obstacles: PointCloud2 (x y z, base frame) of what the reach must avoid.
        stamp_ns: Stamp of the depth frame [ns] (ROS time).
    """

    cloud: Any
    centroid: np.ndarray
    obstacles: Any
    stamp_ns: int


@dataclass
class Planned:
    """The plan stage's output.

    Attributes:
        response: The PlanToProposals response (arm / hand trajectories in the drivers' names).
        proposal: The chosen GraspProposal message.
        target: :class:`dex_policy.executor.GraspTarget` (world = base frame, model joint order).
    """

    response: Any
    proposal: Any
    target: Any
    lift_end_ns: int = 0


@dataclass
class Motion:
    """One segment as the drivers get it.

    Attributes:
        stage: Stage name (messages).
        duration: [s] nominal length.
        arm: JointTrajectory in the arm driver's names, or None.
        arm_goal: (6,) [rad] model-order arm joints at the end (tracking check), or None.
        hand: JointTrajectory in the hand driver's command names (times from the start), or None.
    """

    stage: str
    duration: float
    arm: Any
    arm_goal: np.ndarray | None
    hand: Any


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _t(point) -> float:
    return float(point.time_from_start.sec) + 1e-9 * float(point.time_from_start.nanosec)


def _set_t(point, t: float) -> None:
    ns = int(round(t * 1e9))
    point.time_from_start.sec = ns // 1_000_000_000
    point.time_from_start.nanosec = ns % 1_000_000_000


class RosPorts:
    """:class:`dex_bringup.episode.EpisodePorts` through the nodes' services and the drivers' topics.

    Args:
        node: The rclpy node that owns the clients, publishers and subscriptions.
        settings: Parameters.
        robot: The robot combo (:func:`dex_description.compose.load_robot`).
        executor: The execution policy (:func:`dex_policy.executor.make_executor`).
    """

    def __init__(self, node, settings: OrchestratorSettings, robot, executor):
        from geometry_msgs.msg import PolygonStamped
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState, PointCloud2
        from trajectory_msgs.msg import JointTrajectory

        from dex_description.drivers import arm_map, hand_command_map
        from dex_interfaces.srv import PlanToProposals, ProposeGrasps, SegmentObject

        self.node = node
        self.s = settings
        self.attempt = 1  # the episode's current try (begin_attempt)
        self.robot = robot
        self.executor = executor
        cfg = robot.cfg
        self.arm_map = arm_map(cfg)
        self.hand_cmd_map = hand_command_map(cfg.hand)
        self.arm_vlim = np.asarray(cfg.arm.velocity_limits, dtype=np.float64) * np.ones(len(cfg.arm.joints))
        self.hand_streamed = cfg.hand.driver.command_type.endswith("JointState")
        self.self_filter = SelfFilter(robot, settings.self_filter_margin)
        self.feedback: Callable[[str, str, float], None] = lambda stage, message, progress: None
        self.lock = threading.Lock()
        self.arm_state: dict[str, float] = {}
        self.hand_state: dict[str, float] = {}
        self.arm_stamp = -1.0  # time.monotonic() of the newest arm / hand state [s]
        self.hand_stamp = -1.0
        self.scenes: dict[int, np.ndarray] = {}  # depth stamp [ns] -> scene points (base frame)
        self.tables: dict[int, float] = {}  # depth stamp [ns] -> table height [m]
        self.confirm_event = threading.Event()
        self.confirm_answer = False
        self.confirm_pending = False

        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        services = ReentrantCallbackGroup()
        self.clients = {
            SEGMENT_SERVICE: node.create_client(SegmentObject, SEGMENT_SERVICE, callback_group=services),
            PROPOSE_SERVICE: node.create_client(ProposeGrasps, PROPOSE_SERVICE, callback_group=services),
            PLAN_SERVICE: node.create_client(PlanToProposals, PLAN_SERVICE, callback_group=services),
        }
        self.pub_arm = node.create_publisher(JointTrajectory, cfg.arm.driver.command_topic, reliable)
        self.pub_hand = node.create_publisher(JointState if self.hand_streamed else JointTrajectory,
                                              cfg.hand.driver.command_topic, reliable)
        states = MutuallyExclusiveCallbackGroup()
        topics = {cfg.arm.driver.state_topic or "/joint_states", "/joint_states"}
        if cfg.hand.driver.state_topic:
            topics.add(cfg.hand.driver.state_topic)
        self.state_topics = sorted(topics)
        for topic in self.state_topics:
            node.create_subscription(JointState, topic, self._on_joint_state, reliable, callback_group=states)
        perception = MutuallyExclusiveCallbackGroup()
        node.create_subscription(PointCloud2, SCENE_TOPIC, self._on_scene, latched, callback_group=perception)
        node.create_subscription(PolygonStamped, TABLE_TOPIC, self._on_table, latched, callback_group=perception)

    # -------------------------------------------------------------------------------- inputs
    def _on_joint_state(self, msg) -> None:
        from dex_planning.errors import InvalidInputError
        from dex_planning.msgs import joint_values

        try:
            arm, hand = joint_values(self.robot, msg.name, msg.position)
        except InvalidInputError as exc:
            self.node.get_logger().warning(f"ignoring a joint state: {exc}", throttle_duration_sec=5.0)
            return
        except Exception as exc:  # noqa: BLE001 - a message must never stop the node
            self.node.get_logger().error(f"joint state: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
            return
        now = time.monotonic()
        with self.lock:
            if arm:
                self.arm_state.update(arm)
                self.arm_stamp = now
            if hand:
                self.hand_state.update(hand)
                self.hand_stamp = now

    def _on_scene(self, msg) -> None:
        try:
            from dex_perception.msgs import XYZ, cloud_arrays

            pts = cloud_arrays(msg, XYZ).astype(np.float64)
            with self.lock:
                self.scenes[_stamp_ns(msg.header.stamp)] = pts
                for k in sorted(self.scenes)[:-4]:
                    del self.scenes[k]
        except Exception as exc:  # noqa: BLE001
            self.node.get_logger().warning(f"ignoring a scene cloud: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _on_table(self, msg) -> None:
        try:
            z = table_height(np.array([[p.x, p.y, p.z] for p in msg.polygon.points]).reshape(-1, 3))
            if z is not None:
                with self.lock:
                    self.tables[_stamp_ns(msg.header.stamp)] = z
                    for k in sorted(self.tables)[:-4]:
                        del self.tables[k]
        except Exception as exc:  # noqa: BLE001
            self.node.get_logger().warning(f"ignoring a table: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def measured(self) -> tuple[np.ndarray, np.ndarray]:
        """(arm (6,), hand (n,)) measured joints [rad], model order.

        Raises:
            NodeUnavailable: no joint state yet, or none for ``state_timeout_s``.
        """
        cfg = self.robot.cfg
        now = time.monotonic()
        with self.lock:
            arm, hand = dict(self.arm_state), dict(self.hand_state)
            ages = (now - self.arm_stamp if self.arm_stamp >= 0 else None,
                    now - self.hand_stamp if self.hand_stamp >= 0 else None)
        for what, age in zip(("arm", "hand"), ages):
            if age is None or age > self.s.state_timeout_s:
                detail = "no joint state received" if age is None else f"no joint state for {age:.1f} s"
                raise NodeUnavailable(f"{what} driver", f"{detail} on {', '.join(self.state_topics)}")
        missing = [j for j in cfg.arm.joints if j not in arm] + [j for j in cfg.hand.joints if j not in hand]
        if missing:
            raise NodeUnavailable("robot driver", f"the joint states lack {', '.join(missing)}")
        return (np.array([arm[j] for j in cfg.arm.joints]), np.array([hand[j] for j in cfg.hand.joints]))

    # -------------------------------------------------------------------------------- services
    def _call(self, service: str, request, timeout: float, cancel: threading.Event):
        """Call ``service`` within ``timeout`` [s]; NodeUnavailable names the node when the
        service is missing or silent, Cancelled when ``cancel`` is set meanwhile."""
        client = self.clients[service]
        node_name = SERVICE_NODES[service]
        deadline = time.monotonic() + timeout
        wait_until = min(deadline, time.monotonic() + self.s.service_wait_s)
        while not client.service_is_ready():
            if cancel.is_set():
                raise Cancelled(f"cancelled while waiting for {service}")
            if time.monotonic() > wait_until:
                raise NodeUnavailable(node_name, f"service {service} is not available")
            time.sleep(0.05)
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        while not done.wait(0.05):
            if cancel.is_set() or time.monotonic() > deadline:
                client.remove_pending_request(future)
                if cancel.is_set():
                    raise Cancelled(f"cancelled during {service}")
                gone = "" if client.service_is_ready() else "; the service has gone"
                raise NodeUnavailable(node_name, f"no answer from {service} within {timeout:.1f} s{gone}")
        if future.exception() is not None:
            raise StageFailed(f"{service} failed: {future.exception()}")
        return future.result()

    def _now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _segment(self, prompt: str, after_ns: int, timeout: float, cancel: threading.Event,
                 workspace_raise: float = 0.0, return_scene: bool = False):
        """SegmentObject on a depth frame stamped at or after ``after_ns`` (retried until one is)."""
        from dex_interfaces.srv import SegmentObject

        deadline = time.monotonic() + timeout
        req = SegmentObject.Request(prompt=prompt, workspace_raise=float(workspace_raise), return_scene=return_scene)
        while True:
            res = self._call(SEGMENT_SERVICE, req, max(0.1, deadline - time.monotonic()), cancel)
            stamp = _stamp_ns(res.object_cloud.header.stamp)
            if stamp >= after_ns and res.status != "no_frame":
                return res, stamp
            if time.monotonic() + 0.1 > deadline:
                raise StageFailed(f"perception: no depth frame newer than the request within {timeout:.1f} s "
                                  f"({res.status}: {res.message})")
            if cancel.wait(0.1):
                raise Cancelled("cancelled while waiting for a new depth frame")

    # -------------------------------------------------------------------------------- stages
    def perceive(self, goal: Goal, timeout: float, cancel: threading.Event) -> Perceived:
        from dex_perception.msgs import XYZ, cloud_arrays, cloud_msg

        prompt = goal.target_prompt or self.s.prompt
        t0 = time.monotonic()
        res, stamp = self._segment(prompt, self._now_ns(), timeout, cancel)
        if not res.success:
            raise StageFailed(f"perception: {res.status}: {res.message}")
        pts = cloud_arrays(res.object_cloud, XYZ).astype(np.float64)
        if len(pts) == 0:
            raise StageFailed("perception: no object on the table")
        obstacles = res.object_cloud
        wait_until = min(t0 + timeout, time.monotonic() + self.s.scene_wait_s)
        while True:
            with self.lock:
                scene, table_z = self.scenes.get(stamp), self.tables.get(stamp)
            if scene is not None and table_z is not None:
                arm_q, hand_q = self.measured()  # the robot stands still while it looks
                above = obstacle_points(scene, table_z, self.s.table_clearance)
                obstacles = cloud_msg(res.object_cloud.header, self.self_filter(above, arm_q, hand_q))
                break
            if cancel.wait(0.02):
                raise Cancelled("cancelled during perceive")
            if time.monotonic() > wait_until:
                self.node.get_logger().warning("no scene cloud for the segmented frame: planning avoids the object only")
                break
        return Perceived(res.object_cloud, pts.mean(axis=0), obstacles, stamp)

    def propose(self, perceived: Perceived, goal: Goal, timeout: float, cancel: threading.Event):
        from dex_interfaces.srv import ProposeGrasps

        req = ProposeGrasps.Request(cloud=perceived.cloud, max_proposals=int(self.s.top_k),
                                    seed=attempt_seed(self.s.proposal_seed, self.attempt))
        res = self._call(PROPOSE_SERVICE, req, timeout, cancel)
        if not res.success or not res.proposals.proposals:
            raise StageFailed(f"no grasp proposals: {res.status}: {res.message}")
        res.proposals.object_id = goal.object_id or res.proposals.object_id
        return res.proposals

    def plan(self, proposals, perceived: Perceived, goal: Goal, timeout: float, cancel: threading.Event) -> Planned:
        from sensor_msgs.msg import JointState

        from dex_interfaces.srv import PlanToProposals
        from dex_planning.errors import InvalidInputError
        from dex_planning.planner import make_target
        from dex_policy.executor import GraspTarget

        arm_q, hand_q = self.measured()
        cfg = self.robot.cfg
        start = JointState(name=list(cfg.arm.joints) + list(cfg.hand.joints),
                           position=[float(v) for v in np.concatenate([arm_q, hand_q])])
        req = PlanToProposals.Request(proposals=proposals, start_state=start, obstacle_cloud=perceived.obstacles,
                                      time_budget_s=float(min(self.s.plan_budget_s, 0.8 * timeout)))
        res = self._call(PLAN_SERVICE, req, timeout, cancel)
        if not res.success:
            reasons: dict[str, int] = {}
            for r in res.rejections:
                reasons[r.reason] = reasons.get(r.reason, 0) + 1
            why = ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items()))
            raise StageFailed(f"planning: {res.status}: {res.message}" + (f" ({why})" if why else ""))
        p = res.proposal
        try:
            states = [make_target(self.robot, p.id, (s.wrist_pose.position.x, s.wrist_pose.position.y, s.wrist_pose.position.z),
                                  (s.wrist_pose.orientation.w, s.wrist_pose.orientation.x, s.wrist_pose.orientation.y,
                                   s.wrist_pose.orientation.z), list(p.joint_names), list(s.joint_positions))
                      for s in (p.pregrasp, p.grasp, p.squeeze)]
        except InvalidInputError as exc:
            raise StageFailed(f"planning: the chosen proposal is malformed: {exc}") from exc
        target = GraspTarget(states[0].world_T_root, states[1].world_T_root, states[2].world_T_root,
                             states[0].hand_q, states[1].hand_q, states[2].hand_q)
        self.node.get_logger().info(f"planned proposal {res.proposal_index} ({p.id}): {res.message}")
        return Planned(res, p, target)

    def confirm(self, plan: Planned, timeout: float, cancel: threading.Event) -> bool:
        with self.lock:
            self.confirm_event.clear()
            self.confirm_answer = False
            self.confirm_pending = True
        self.feedback("plan", f"waiting for the operator: call {CONFIRM_SERVICE} (std_srvs/SetBool) with data true to "
                      f"execute proposal {plan.proposal.id}, false to stop", 0.3)
        try:
            deadline = time.monotonic() + timeout
            while not self.confirm_event.wait(0.05):
                if cancel.is_set():
                    raise Cancelled("cancelled while waiting for confirmation")
                if time.monotonic() > deadline:
                    return False
            return self.confirm_answer
        finally:
            with self.lock:
                self.confirm_pending = False

    def on_confirm(self, data: bool) -> tuple[bool, str]:
        """The operator's answer (``/dex/confirm_motion``); (accepted, message)."""
        with self.lock:
            if not self.confirm_pending:
                return False, "no motion is waiting for confirmation"
            self.confirm_answer = bool(data)
            self.confirm_event.set()
        return True, "motion confirmed" if data else "motion refused"

    # -------------------------------------------------------------------------------- motion
    def _retimed(self, msg, stretch: float):
        """A copy of a JointTrajectory message slowed by ``stretch`` (:func:`retime`)."""
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        out = JointTrajectory(joint_names=list(msg.joint_names))
        if not msg.points:
            return out
        t = np.array([_t(p) for p in msg.points])
        qd = np.array([list(p.velocities) for p in msg.points]) if all(len(p.velocities) for p in msg.points) else None
        qdd = (np.array([list(p.accelerations) for p in msg.points])
               if all(len(p.accelerations) for p in msg.points) else None)
        t2, qd2, qdd2 = retime(t, qd, qdd, stretch)
        for k, p in enumerate(msg.points):
            q = JointTrajectoryPoint(positions=list(p.positions))
            if qd2 is not None:
                q.velocities = [float(v) for v in qd2[k]]
            if qdd2 is not None:
                q.accelerations = [float(v) for v in qdd2[k]]
            _set_t(q, float(t2[k]))
            out.points.append(q)
        return out

    def _reach_motion(self, plan: Planned) -> Motion:
        res = plan.response
        arm, hand = res.arm_trajectory, res.hand_trajectory
        if not arm.points:
            raise StageFailed("reach: the plan has no arm trajectory")
        idx = {n: i for i, n in enumerate(arm.joint_names)}
        try:
            cols = [idx[n] for n in self.arm_map.names]
        except KeyError as exc:
            raise StageFailed(f"reach: the arm trajectory lacks joint {exc}") from None
        qd = (np.array([[p.velocities[c] for c in cols] for p in arm.points]) / np.abs(self.arm_map.scale)
              if all(len(p.velocities) for p in arm.points) else np.zeros((0, 6)))
        stretch = reach_stretch(qd, self.arm_vlim[[self.robot.cfg.arm.joints.index(s) for s in self.arm_map.sources]],
                                self.s.speed_scale)
        arm2 = self._retimed(arm, stretch)
        hand2 = self._retimed(hand, stretch) if hand.points else None
        last = arm2.points[-1]
        goal = self.arm_map.from_driver(list(arm2.joint_names), list(last.positions))
        arm_goal = np.array([goal[j] for j in self.robot.cfg.arm.joints])
        duration = max(_t(last), _t(hand2.points[-1]) if hand2 is not None else 0.0)
        return Motion("reach", duration, arm2, arm_goal, hand2)

    def _segment_motion(self, seg) -> Motion:
        """A :class:`dex_policy.executor.MotionSegment` as driver messages (positions + velocities)."""
        from std_msgs.msg import Header

        from dex_planning.interface import Trajectory
        from dex_planning.msgs import arm_trajectory_msg, hand_trajectory_msg

        cfg = self.robot.cfg
        dt = float(np.min(np.diff(seg.t))) if len(seg.t) > 1 else 0.02
        header = Header()
        arm = arm_trajectory_msg(self.robot, Trajectory(tuple(cfg.arm.joints), seg.t, seg.arm_q, seg.arm_qd(),
                                                        np.zeros_like(seg.arm_q)), header, dt)
        hand = hand_trajectory_msg(self.robot, Trajectory(tuple(cfg.hand.joints), seg.t, seg.hand_q, seg.hand_qd(),
                                                          np.zeros_like(seg.hand_q)), header, dt)
        for msg in (arm, hand):
            for p in msg.points:
                p.accelerations = []
        return Motion(seg.stage, seg.duration, arm, np.asarray(seg.arm_q[-1], dtype=np.float64), hand)

    def _hand_target_msg(self, positions, names):
        from sensor_msgs.msg import JointState

        msg = JointState(name=list(names), position=[float(v) for v in positions])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        return msg

    @staticmethod
    def _from_now(msg):
        """The message without a ``t = 0`` point (the controller starts from its own state)."""
        if msg is not None and len(msg.points) > 1 and _t(msg.points[0]) <= 0.0:
            msg.points = list(msg.points)[1:]
        return msg

    def _run(self, motion: Motion, timeout: float, cancel: threading.Event) -> None:
        """Send ``motion`` to the drivers and wait for its end on the joint states.

        Raises:
            Cancelled: ``cancel`` was set (the caller stops the motion).
            StageFailed: timeout, or the arm ended more than ``track_tol`` from its goal.
            NodeUnavailable: the joint states stopped.
        """
        start = time.monotonic()
        self.measured()  # the drivers are alive before anything is sent
        stream = None
        if motion.hand is not None and motion.hand.points:
            if self.hand_streamed:
                stream = (np.array([_t(p) for p in motion.hand.points]),
                          np.array([list(p.positions) for p in motion.hand.points]), list(motion.hand.joint_names))
            else:
                self.pub_hand.publish(self._from_now(motion.hand))
        if motion.arm is not None and motion.arm.points:
            self.pub_arm.publish(self._from_now(motion.arm))
        period = 1.0 / self.s.control_rate_hz
        t0 = time.monotonic()
        end = t0 + motion.duration
        while True:
            now = time.monotonic()
            if stream is not None:
                self.pub_hand.publish(self._hand_target_msg(sample_at(now - t0, stream[0], stream[1]), stream[2]))
            if now >= end:
                break
            if now - start > timeout:
                raise StageFailed(f"{motion.stage}: motion did not finish within {timeout:.1f} s")
            if cancel.wait(min(period, max(0.0, end - now))):
                raise Cancelled(f"cancelled during {motion.stage}")
        settle_until = time.monotonic() + self.s.settle_s
        while True:
            arm_q, _ = self.measured()
            err = tracking_error(arm_q, motion.arm_goal) if motion.arm_goal is not None else 0.0
            if err <= self.s.track_tol:
                return
            if time.monotonic() > settle_until:
                worst = self.robot.cfg.arm.joints[int(np.argmax(np.abs(np.asarray(arm_q) - motion.arm_goal)))]
                raise StageFailed(f"{motion.stage}: the arm ended {err:.3f} rad from its target ({worst}; blocked?)")
            if time.monotonic() - start > timeout:
                raise StageFailed(f"{motion.stage}: motion did not finish within {timeout:.1f} s")
            if cancel.wait(0.02):
                raise Cancelled(f"cancelled during {motion.stage}")

    def reach(self, plan: Planned, timeout: float, cancel: threading.Event) -> None:
        self._run(self._reach_motion(plan), timeout, cancel)

    def preshape(self, plan: Planned, timeout: float, cancel: threading.Event) -> None:
        # the planned hand trajectory shaped the hand during the reach: wait until it is there
        deadline = time.monotonic() + min(timeout, self.s.settle_s)
        while True:
            _, hand_q = self.measured()
            err, worst = hand_shape_error(self.robot.cfg.hand, hand_q, plan.target.pregrasp_q)
            if err <= self.s.preshape_tol:
                return
            if time.monotonic() > deadline:
                raise StageFailed(f"preshape: the hand is {err:.2f} rad from its pre-grasp shape ({worst})")
            if cancel.wait(0.02):
                raise Cancelled("cancelled during preshape")

    def _stage(self, name: str, plan: Planned, timeout: float, cancel: threading.Event, height: float = 0.0) -> None:
        from dex_policy.executor import ExecutionContext, ExecutionError

        start = time.monotonic()
        ctx = ExecutionContext(plan.target, self.measured, height)
        try:
            for seg in getattr(self.executor, name)(ctx):
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    raise StageFailed(f"{name}: did not finish within {timeout:.1f} s")
                self._run(self._segment_motion(seg), left, cancel)
        except ExecutionError as exc:
            raise StageFailed(f"{name}: {exc}") from exc

    def approach(self, plan: Planned, timeout: float, cancel: threading.Event) -> None:
        self._stage("approach", plan, timeout, cancel)

    def squeeze(self, plan: Planned, timeout: float, cancel: threading.Event) -> None:
        self._stage("squeeze", plan, timeout, cancel)

    def lift(self, plan: Planned, height: float, timeout: float, cancel: threading.Event) -> None:
        self._stage("lift", plan, timeout, cancel, height)
        plan.lift_end_ns = self._now_ns()

    def release(self, plan: Planned, timeout: float, cancel: threading.Event) -> None:
        self._stage("release", plan, timeout, cancel)

    def begin_attempt(self, attempt: int) -> None:
        self.attempt = attempt

    def verify(self, perceived: Perceived, plan: Planned, height: float, timeout: float,
               cancel: threading.Event) -> tuple[bool, str]:
        from dex_policy.executor import fingers_blocked

        from dex_perception.msgs import XYZ, cloud_arrays

        c = perceived.centroid
        hold = min(self.s.verify_hold_s, 0.5 * timeout)  # hold the lifted object a moment: a slipping grasp shows
        if cancel.wait(hold):
            raise Cancelled("cancelled while holding the lifted object")
        after_ns = self._now_ns()  # the robot holds still from here: the frame and the joints agree
        arm_q, hand_q = self.measured()
        res, _ = self._segment(f"point {c[0]:.4f} {c[1]:.4f} {c[2]:.4f}", after_ns, timeout - hold, cancel,
                               workspace_raise=self.s.verify_extra_height, return_scene=self.s.min_held_points > 0)
        blocked, gap = fingers_blocked(hand_q, plan.target.grasp_q, plan.target.squeeze_q)
        held = None
        if self.s.min_held_points > 0:
            # where the object should be if it went up with the hand: its centroid moved as the wrist did
            moved = self.executor.arm.wrist_pose(arm_q)[:3, 3] - plan.target.squeeze_T[:3, 3]
            scene = cloud_arrays(res.scene_cloud, XYZ).astype(np.float64)
            held = held_object_points(scene, None, self.self_filter, arm_q, hand_q, c + moved,
                                      self.s.held_radius, self.s.held_margin)
        ok, why = verify_verdict(res.status, res.message, blocked, gap, held, self.s.min_held_points)
        if ok is None:
            raise StageFailed(why)
        return ok, why

    def stop_motion(self) -> None:
        """Hold the arm and the hand where they are (measured), reached within ``hold_s``."""
        from std_msgs.msg import Header

        from dex_planning.interface import Trajectory
        from dex_planning.msgs import arm_trajectory_msg, hand_trajectory_msg

        cfg = self.robot.cfg
        arm_q, hand_q = self.measured()
        h = self.s.hold_s
        t = np.array([0.0, h])
        arm = arm_trajectory_msg(self.robot, Trajectory(tuple(cfg.arm.joints), t, np.stack([arm_q, arm_q]),
                                                        np.zeros((2, len(arm_q))), np.zeros((2, len(arm_q)))), Header(), h)
        hand = hand_trajectory_msg(self.robot, Trajectory(tuple(cfg.hand.joints), t, np.stack([hand_q, hand_q]),
                                                          np.zeros((2, len(hand_q))), np.zeros((2, len(hand_q)))), Header(), h)
        for msg in (arm, hand):
            msg.points = list(msg.points)[-1:]
            for p in msg.points:
                p.accelerations = []
        self.pub_arm.publish(arm)
        if self.hand_streamed:
            self.pub_hand.publish(self._hand_target_msg(hand.points[0].positions, hand.joint_names))
        else:
            self.pub_hand.publish(hand)
        self.node.get_logger().info("motion stopped: holding the measured arm and hand positions")

    def proposal_of(self, plan: Planned | None):
        return None if plan is None else plan.proposal


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.action import ActionServer, CancelResponse, GoalResponse
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions
    from std_srvs.srv import SetBool

    from dex_interfaces.action import ExecuteGrasp
    from dex_interfaces.msg import GraspProposal, StageTiming

    class OrchestratorNode(Node):
        def __init__(self) -> None:
            super().__init__(NODE_NAME)
            dynamic = ParameterDescriptor(dynamic_typing=True)  # 3 and 3.0 both work for a float
            for name, default in parameter_defaults().items():
                self.declare_parameter(name, default, dynamic)
            self.setup_error = ""
            self.ports: RosPorts | None = None
            self.settings = OrchestratorSettings()
            self.busy = threading.Lock()
            self.active_cancel: threading.Event | None = None
            try:
                self.settings = settings_from_parameters({n: self.get_parameter(n).value for n in parameter_defaults()})
                from dex_description.compose import load_robot
                from dex_planning.planner import make_planner
                from dex_policy.executor import make_executor

                robot = load_robot(self.settings.robot)
                executor = make_executor(self.settings.executor, robot, make_planner(robot),
                                         self.settings.executor_config())
                self.ports = RosPorts(self, self.settings, robot, executor)
            except Exception as exc:  # noqa: BLE001 - report it on every goal rather than die
                self.setup_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"orchestrator not configured: {self.setup_error}")
            group = ReentrantCallbackGroup()
            self.server = ActionServer(self, ExecuteGrasp, ACTION, execute_callback=self.execute,
                                       goal_callback=self.on_goal, cancel_callback=self.on_cancel, callback_group=group)
            self.create_service(SetBool, CONFIRM_SERVICE, self.on_confirm, callback_group=MutuallyExclusiveCallbackGroup())
            if self.ports is not None:
                cfg = self.ports.robot.cfg
                self.get_logger().info(
                    f"{NODE_NAME} ready: {cfg.name}, {ACTION}; arm on {cfg.arm.driver.command_topic}, hand on "
                    f"{cfg.hand.driver.command_topic} ({'streamed JointState' if self.ports.hand_streamed else 'JointTrajectory'}), "
                    f"speed_scale {self.settings.speed_scale}, require_confirm {self.settings.require_confirm}")

        def on_goal(self, goal) -> GoalResponse:
            if not self.busy.acquire(blocking=False):
                self.get_logger().warning("goal rejected: an episode is running")
                return GoalResponse.REJECT
            return GoalResponse.ACCEPT  # the lock is released when the goal ends

        def on_cancel(self, goal_handle) -> CancelResponse:
            ev = self.active_cancel
            if ev is not None:
                ev.set()
            return CancelResponse.ACCEPT

        def on_confirm(self, request, response):
            if self.ports is None:
                response.success, response.message = False, f"not configured: {self.setup_error}"
            else:
                response.success, response.message = self.ports.on_confirm(bool(request.data))
            return response

        def execute(self, goal_handle):
            result = ExecuteGrasp.Result()
            cancel = threading.Event()
            self.active_cancel = cancel
            try:
                if goal_handle.is_cancel_requested:
                    cancel.set()
                g = goal_handle.request
                goal = Goal(object_id=g.object_id, target_prompt=g.target_prompt, proposal_policy=g.proposal_policy,
                            dry_run=bool(g.dry_run), lift_height=float(g.lift_height))
                refusal = ""
                if self.ports is None:
                    refusal = f"orchestrator not configured: {self.setup_error}"
                elif goal.proposal_policy and goal.proposal_policy not in SUPPORTED_POLICIES:
                    refusal = (f"unknown proposal_policy '{goal.proposal_policy}' "
                               f"(supported: {', '.join(SUPPORTED_POLICIES)})")
                if refusal:
                    result.success, result.stage_reached = False, ExecuteGrasp.Feedback.STAGE_PERCEIVE
                    result.reason = refusal
                    self.get_logger().error(f"goal refused: {refusal}")
                    goal_handle.abort()
                    return result

                def feedback(stage: str, message: str, progress: float) -> None:
                    try:
                        goal_handle.publish_feedback(ExecuteGrasp.Feedback(stage=stage, message=message,
                                                                           progress=float(progress)))
                    except Exception as exc:  # noqa: BLE001 - feedback is best effort
                        self.get_logger().warning(f"feedback not sent: {exc}")
                    self.get_logger().info(f"[{stage}] {message}")

                self.ports.feedback = feedback
                self.get_logger().info(f"goal: prompt '{goal.target_prompt or self.settings.prompt}', "
                                       f"dry_run {goal.dry_run}, lift {goal.lift_height} m")
                ep = GraspEpisode(self.ports, self.settings.episode_config(), feedback, cancel).run(goal)
                result.success = bool(ep.success)
                result.stage_reached = ep.stage_reached
                result.reason = ep.reason
                result.timings = [StageTiming(stage=s, duration_s=float(d)) for s, d in ep.timings]
                result.proposal = ep.proposal if ep.proposal is not None else GraspProposal()
                self.get_logger().info(f"episode {'succeeded' if ep.success else 'failed'} at {ep.stage_reached}: {ep.reason}")
                if cancel.is_set() and not ep.success:
                    goal_handle.canceled()
                elif ep.success:
                    goal_handle.succeed()
                else:
                    goal_handle.abort()
            except Exception as exc:  # noqa: BLE001 - never die on a goal
                self.get_logger().error(f"goal failed: {traceback.format_exc()}")
                result.success = False
                result.stage_reached = result.stage_reached or ExecuteGrasp.Feedback.STAGE_PERCEIVE
                result.reason = f"internal error: {type(exc).__name__}: {exc}"
                try:
                    goal_handle.abort()
                except Exception:  # noqa: BLE001 - the handle may already be terminal
                    pass
            finally:
                self.active_cancel = None
                self.busy.release()
            return result

        def destroy_node(self) -> None:
            """Destroy the action server too: ``Node.destroy_node`` leaves actions (and so the
            node) alive and discoverable."""
            server = getattr(self, "server", None)
            if server is not None:
                server.destroy()
            super().destroy_node()

        def shutdown(self) -> None:
            """Cancel a running episode (its motion is stopped) before the context goes."""
            ev = self.active_cancel
            if ev is not None:
                ev.set()
                deadline = time.monotonic() + 3.0
                while self.active_cancel is not None and time.monotonic() < deadline:
                    time.sleep(0.02)
                if self.ports is not None:
                    try:
                        self.ports.stop_motion()
                    except Exception:  # noqa: BLE001 - best effort on the way out
                        pass

    rclpy.init(args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _s, _f: stop.set())
    node = None
    executor = MultiThreadedExecutor(num_threads=4)
    try:
        node = OrchestratorNode()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            stopper = threading.Thread(target=node.shutdown, daemon=True)
            stopper.start()
            deadline = time.monotonic() + 4.0
            while stopper.is_alive() and time.monotonic() < deadline and rclpy.ok():
                executor.spin_once(timeout_sec=0.05)  # let the episode finish its goal
            executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
