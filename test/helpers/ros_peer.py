#!/usr/bin/env python3
"""A second ROS 2 process for the toolchain tests (test/test_ros_toolchain.py).

It proves that our built interfaces work *across processes*:

- echo: every ``dex_interfaces/GraspProposalArray`` received on ``--echo-in`` is republished,
  unchanged, on ``--echo-out`` (both reliable + transient-local);
- action: an ``ExecuteGrasp`` server on ``--action`` that rejects goals whose
  ``proposal_policy`` is :data:`REJECT_POLICY`, and otherwise "runs" the stages (dry run:
  perceive, propose, plan; else all stages up to done), publishing one feedback per stage and
  returning a result derived from the goal (see :func:`result_for_goal`);
- shutdown: exits with status 0 on a ``std_msgs/Empty`` on ``--shutdown-topic`` (reliable,
  transient-local: use a topic unique to this peer), on SIGINT or
  SIGTERM, when its parent process dies, or after ``--max-lifetime`` seconds.

Discovery range and domain come from the environment (``ROS_AUTOMATIC_DISCOVERY_RANGE``,
``ROS_DOMAIN_ID``), which the test process sets. Prints ``READY`` on stdout once everything
is created. Not a product node: it exists only for tests.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from typing import Sequence

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Empty

from dex_interfaces.action import ExecuteGrasp
from dex_interfaces.msg import GraspProposal, GraspProposalArray, StageTiming

REJECT_POLICY = "reject-me"
DRY_RUN_STAGES = (
    ExecuteGrasp.Feedback.STAGE_PERCEIVE,
    ExecuteGrasp.Feedback.STAGE_PROPOSE,
    ExecuteGrasp.Feedback.STAGE_PLAN,
)
FULL_STAGES = DRY_RUN_STAGES + (
    ExecuteGrasp.Feedback.STAGE_REACH,
    ExecuteGrasp.Feedback.STAGE_PRESHAPE,
    ExecuteGrasp.Feedback.STAGE_APPROACH,
    ExecuteGrasp.Feedback.STAGE_SQUEEZE,
    ExecuteGrasp.Feedback.STAGE_LIFT,
    ExecuteGrasp.Feedback.STAGE_VERIFY,
    ExecuteGrasp.Feedback.STAGE_DONE,
)
FEEDBACK_SUBSCRIBER_WAIT_S = 5.0  # [s] bound on waiting for the client's feedback subscription
STAGE_SLEEP_S = 0.01  # [s] pretend work per stage


def latched_qos(depth: int = 10) -> QoSProfile:
    """Reliable, transient-local QoS: late-joining subscribers still get the last messages."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def stages_for_goal(goal: ExecuteGrasp.Goal) -> tuple[str, ...]:
    """Stages the fake episode runs for ``goal``."""
    return DRY_RUN_STAGES if goal.dry_run else FULL_STAGES


def result_for_goal(goal: ExecuteGrasp.Goal, durations_s: Sequence[float]) -> ExecuteGrasp.Result:
    """The result the fake episode returns: everything in it is derived from ``goal``.

    Args:
        goal: the accepted goal.
        durations_s: measured duration [s] of each stage in :func:`stages_for_goal` order.
    """
    stages = stages_for_goal(goal)
    policy = goal.proposal_policy or ExecuteGrasp.Goal.DEFAULT_PROPOSAL_POLICY
    result = ExecuteGrasp.Result()
    result.success = not goal.dry_run
    result.stage_reached = stages[-1]
    result.reason = (f"object_id={goal.object_id} target_prompt={goal.target_prompt} "
                     f"proposal_policy={policy} dry_run={goal.dry_run} "
                     f"lift_height={goal.lift_height!r}")
    result.timings = [StageTiming(stage=stage, duration_s=float(duration))
                      for stage, duration in zip(stages, durations_s)]
    proposal = GraspProposal()
    proposal.id = f"{goal.object_id}-p0"
    proposal.hand_name = "leap_right"
    proposal.method = policy
    proposal.wrist_frame = "palm_lower"
    proposal.joint_names = [f"j{i}" for i in range(16)]
    proposal.grasp.joint_positions = [0.1 * i for i in range(16)]
    proposal.grasp.wrist_pose.position.z = max(goal.lift_height, 0.0)
    proposal.score = 1.0
    proposal.energy = math.nan
    result.proposal = proposal
    return result


class RosPeer(Node):
    """Echo + ExecuteGrasp server + shutdown listener (see module docstring)."""

    def __init__(self, context: Context, node_name: str, echo_in: str, echo_out: str,
                 action_name: str, shutdown_topic: str) -> None:
        super().__init__(node_name, context=context, start_parameter_services=False)
        self.stop_requested = threading.Event()
        self._echo_pub = self.create_publisher(GraspProposalArray, echo_out, latched_qos())
        self.create_subscription(GraspProposalArray, echo_in, self._on_proposals, latched_qos())
        self.create_subscription(Empty, shutdown_topic, self._on_shutdown, latched_qos(1),
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self._action_name = action_name
        self._action_server = ActionServer(
            self, ExecuteGrasp, action_name,
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda _goal_handle: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())

    def _on_proposals(self, msg: GraspProposalArray) -> None:
        self._echo_pub.publish(msg)

    def _on_shutdown(self, _msg: Empty) -> None:
        self.get_logger().info("shutdown requested on topic")
        self.stop_requested.set()

    def _on_goal(self, goal: ExecuteGrasp.Goal) -> GoalResponse:
        if goal.proposal_policy == REJECT_POLICY:
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _wait_for_feedback_subscriber(self) -> None:
        """Wait (bounded) until the client's feedback subscription is visible in the graph."""
        topic = self.resolve_topic_name(self._action_name) + "/_action/feedback"
        deadline = time.monotonic() + FEEDBACK_SUBSCRIBER_WAIT_S
        while self.count_subscribers(topic) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    def _execute(self, goal_handle: ServerGoalHandle) -> ExecuteGrasp.Result:
        goal: ExecuteGrasp.Goal = goal_handle.request
        stages = stages_for_goal(goal)
        self._wait_for_feedback_subscriber()
        durations_s: list[float] = []
        for index, stage in enumerate(stages):
            start = time.monotonic()
            feedback = ExecuteGrasp.Feedback()
            feedback.stage = stage
            feedback.message = f"{stage} {goal.object_id}"
            feedback.progress = float(index + 1) / len(FULL_STAGES)
            goal_handle.publish_feedback(feedback)
            time.sleep(STAGE_SLEEP_S)
            durations_s.append(time.monotonic() - start)
        goal_handle.succeed()
        return result_for_goal(goal, durations_s)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (topic/action names and lifetime bounds)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--node-name", default="dex_ros_peer")
    parser.add_argument("--echo-in", default="/test/proposals_in")
    parser.add_argument("--echo-out", default="/test/proposals_out")
    parser.add_argument("--action", default="/test/execute_grasp")
    parser.add_argument("--shutdown-topic", default="/test/peer_shutdown")
    parser.add_argument("--max-lifetime", type=float, default=120.0,
                        help="exit after this long no matter what [s]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the peer until asked to stop; returns the exit status (0 on every orderly stop)."""
    args = parse_args(argv)
    parent_pid = os.getppid()
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    node = RosPeer(context, args.node_name, args.echo_in, args.echo_out, args.action,
                   args.shutdown_topic)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    deadline = time.monotonic() + args.max_lifetime
    print("READY", flush=True)
    reason = "?"
    try:
        while True:
            if stop.is_set():
                reason = "signal"
                break
            if node.stop_requested.is_set():
                reason = "shutdown topic"
                break
            if os.getppid() != parent_pid:
                reason = "parent died"
                break
            if time.monotonic() > deadline:
                reason = "max lifetime"
                break
            executor.spin_once(timeout_sec=0.05)
    except ExternalShutdownException:
        reason = "external shutdown"
    finally:
        executor.shutdown(timeout_sec=2.0)
        node._action_server.destroy()  # Node.destroy_node leaves actions alive
        node.destroy_node()
        if context.ok():
            context.shutdown()
    print(f"EXIT {reason}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
