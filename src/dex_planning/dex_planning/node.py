"""``planning_node``: the ``/dex/plan_to_proposals`` service, a thin adapter around
:func:`dex_planning.planner.make_planner` (CPU or cuRobo backend).

Service ``/dex/plan_to_proposals`` (dex_interfaces/srv/PlanToProposals): ranked proposals (+ start
state, obstacle cloud, time budget) -> the first feasible proposal's arm trajectory (UR driver joint
names, positions/velocities/accelerations every ``sample_dt``) and hand pre-shaping trajectory
(the hand driver's command names and conventions), plus one ``ProposalRejection`` per proposal not
used. Statuses: ``ok``, ``no_feasible_proposal``, ``timeout``, ``invalid_request`` (NaN, bad frame,
unknown joints, start in collision or out of limits, no joint state yet), ``backend_unavailable``
(the configured backend could not start, e.g. cuRobo missing), ``internal_error`` (a bug; logged
with its traceback). A failed request never carries a trajectory.

Subscribes ``/joint_states`` (sensor_msgs/JointState; arm and optionally hand joints) and the hand
driver's state topic (robot YAML ``hand.driver.state_topic``) for the start state when a request
leaves ``start_state`` empty. Publishes the planned wrist path on ``/dex/markers``
(visualization_msgs/MarkerArray, namespace ``plan``; deleted when a request fails).

Parameters: ``robot`` (``ur5e_leap``), ``backend`` (``cpu`` | ``curobo``), ``config`` (optional
YAML of planner-config overrides, see :func:`dex_planning.config.load_config`), ``base_frame``
(``base_link``), ``time_budget_s`` (<= 0: the config's), ``sample_dt`` (output point period [s]),
``table_center_xy``, ``table_size_xy``, ``table_top_z``, ``table_thickness`` (the table box; defaults:
dex_sim's table), ``use_table`` (true).
"""

from __future__ import annotations

import sys
import threading
import traceback

import numpy as np

NODE_NAME = "dex_planning"
SERVICE = "/dex/plan_to_proposals"
MARKERS = "/dex/markers"


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

    from dex_description.compose import load_robot
    from dex_description.errors import DescriptionError
    from dex_description.node_main import build_node
    from dex_interfaces.srv import PlanToProposals
    from dex_planning import msgs as conv
    from dex_planning.config import default_config, load_config, override
    from dex_planning.errors import InvalidInputError
    from dex_planning.interface import STATUS_BACKEND_UNAVAILABLE, STATUS_INTERNAL_ERROR, STATUS_INVALID
    from dex_planning.planner import make_planner
    from dex_planning.scene import PlanningScene, table_box

    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

    class PlanningNode(Node):
        def __init__(self) -> None:
            super().__init__(NODE_NAME)
            p = self.declare_parameter
            p("robot", "ur5e_leap")
            p("backend", "cpu")
            p("config", "")
            p("base_frame", "base_link")
            p("time_budget_s", 0.0)
            p("sample_dt", 0.0)
            p("use_table", True)
            p("table_center_xy", [0.0, 0.45])
            p("table_size_xy", [1.2, 1.4])
            p("table_top_z", 0.0)
            p("table_thickness", 0.05)
            g = self.get_parameter
            self.base_frame = str(g("base_frame").value)
            self.budget = float(g("time_budget_s").value)
            self.lock = threading.Lock()
            self.arm_state: dict[str, float] = {}
            self.hand_state: dict[str, float] = {}
            self.planner = None
            self.setup_error = ""
            self.robot = None
            try:
                self.robot = load_robot(str(g("robot").value))
                cfg = load_config(g("config").value) if g("config").value else default_config()
                cfg = override(cfg, {"backend": str(g("backend").value)})
                if float(g("sample_dt").value) > 0:
                    cfg = override(cfg, {"timing.sample_dt": float(g("sample_dt").value)})
                self.cfg = cfg
                self.table = (table_box(tuple(g("table_center_xy").value), tuple(g("table_size_xy").value),
                                        float(g("table_top_z").value), float(g("table_thickness").value))
                              if g("use_table").value else None)
                self.planner = make_planner(self.robot, cfg)
                self.get_logger().info(f"planner ready: {self.robot.name}, backend {cfg.backend}")
            except DescriptionError as exc:  # PlanningError, BackendUnavailableError, config/model errors
                self.setup_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"planner not available: {self.setup_error}")
            self.pub_markers = self.create_publisher(MarkerArray, MARKERS, latched)
            self.create_subscription(JointState, "/joint_states", self.on_joint_states, 10)
            if self.robot is not None:
                topic = self.robot.cfg.hand.driver.state_topic
                if topic and topic != "/joint_states":
                    self.create_subscription(JointState, topic, self.on_joint_states, 10)
            self.create_service(PlanToProposals, SERVICE, self.on_plan)

        def on_joint_states(self, msg) -> None:
            if self.robot is None:
                return
            try:
                arm, hand = conv.joint_values(self.robot, msg.name, msg.position)
            except InvalidInputError as exc:
                self.get_logger().warning(f"ignoring joint state: {exc}", throttle_duration_sec=5.0)
                return
            with self.lock:
                self.arm_state.update(arm)
                self.hand_state.update(hand)

        def _start(self, req) -> tuple[np.ndarray, np.ndarray]:
            cfg = self.robot.cfg
            with self.lock:
                arm, hand = dict(self.arm_state), dict(self.hand_state)
            if req.start_state.name:
                a, h = conv.joint_values(self.robot, req.start_state.name, req.start_state.position)
                arm.update(a)
                hand.update(h)
            if not arm:
                raise InvalidInputError("no start state: the request's start_state is empty and no /joint_states "
                                        "has been received")
            return (conv.vector(cfg.arm.joints, arm, "start state (arm)"),
                    conv.vector(cfg.hand.joints, hand, "start state (hand)"))

        def on_plan(self, req, resp):
            header = Header(frame_id=self.base_frame, stamp=self.get_clock().now().to_msg())
            resp.proposal_index = -1
            if self.planner is None:
                resp.success, resp.status = False, STATUS_BACKEND_UNAVAILABLE
                resp.message = self.setup_error
                return resp
            try:
                start_q, start_hand = self._start(req)
                targets = conv.proposals_from_msg(self.robot, req.proposals, self.base_frame)
                cloud = conv.cloud_points(req.obstacle_cloud)
                frame = req.obstacle_cloud.header.frame_id
                if cloud is not None and frame and frame.lstrip("/") != self.base_frame:
                    raise InvalidInputError(f"obstacle cloud is in frame '{frame}', expected '{self.base_frame}'")
                scene = PlanningScene(((self.table,) if self.table is not None else ()), cloud,
                                      self.cfg.collision.cloud_resolution)
            except InvalidInputError as exc:
                resp.success, resp.status, resp.message = False, STATUS_INVALID, str(exc)
                self.pub_markers.publish(conv.path_markers(header, None))
                return resp
            try:
                budget = req.time_budget_s if req.time_budget_s > 0 else (self.budget if self.budget > 0 else None)
                res = self.planner.select(start_q, start_hand, targets, scene, budget)
                resp.success, resp.status, resp.message = res.success, res.status, res.message
                resp.rejections = conv.rejection_msgs(res.rejections)
                resp.planning_time_s = float(res.planning_time)
                if res.success:
                    resp.proposal_index = res.index
                    resp.proposal = req.proposals.proposals[res.index]
                    dt = self.cfg.timing.sample_dt
                    resp.arm_trajectory = conv.arm_trajectory_msg(self.robot, res.arm, header, dt)
                    resp.hand_trajectory = conv.hand_trajectory_msg(self.robot, res.hand, header, dt)
                    text = f"proposal {res.index}: {res.arm.duration:.2f} s"
                    self.pub_markers.publish(conv.path_markers(header, self.planner.wrist_path(res.attempt.arm), text))
                else:
                    self.pub_markers.publish(conv.path_markers(header, None))
                self.get_logger().info(f"{res.status}: {res.message} ({1e3 * res.planning_time:.0f} ms)")
            except Exception as exc:  # noqa: BLE001 - a request must never stop the node
                self.get_logger().error(f"planning failed: {traceback.format_exc()}")
                resp.success, resp.status = False, STATUS_INTERNAL_ERROR
                resp.message = f"{type(exc).__name__}: {exc}"
                resp.arm_trajectory.points = []
                resp.hand_trajectory.points = []
            return resp

    rclpy.init(args=argv if argv is not None else sys.argv)
    node = build_node(PlanningNode)
    try:
        if node is not None:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
