"""Grasp-proposal ROS node: a thin adapter over :class:`dex_proposal.api.Proposer`.

Topics and services:

* subscribes ``/dex/object_cloud`` (sensor_msgs/PointCloud2 x y z normal_x normal_y normal_z, base
  frame); with ``auto_propose`` (default true) every new cloud is proposed on (the latest one wins
  while a run is in progress);
* publishes ``/dex/grasp_proposals`` (dex_interfaces/GraspProposalArray, latched) and
  ``/dex/markers`` (visualization_msgs/MarkerArray, namespace ``proposals``: fingertips and hand
  skeleton of the top ``marker_count`` grasps);
* serves ``/dex/propose_grasps`` (dex_interfaces/srv/ProposeGrasps): an empty request cloud means
  the latest cloud received; ``status`` is one of :class:`dex_proposal.api.Status`.

Parameters: ``robot`` (ur5e_leap), ``device`` (cpu), ``n_candidates``, ``top_k``, ``seed``,
``table_z`` (NaN = no table), ``check_reach``, ``auto_propose``, ``marker_count``, ``base_frame``,
``iter_scale`` (scales every stage's iterations: < 1 for quick, rougher answers).

Bad input never kills the node: malformed clouds and bad statuses are logged and answered.

Run: ``python -m dex_proposal.node --ros-args -p robot:=ur10e_shadow``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback


class _Stopping(Exception):
    """Raised from the synthesis progress callback when the node shuts down."""


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

    from dex_description.node_main import build_node
    from dex_interfaces.msg import GraspProposalArray
    from dex_interfaces.srv import ProposeGrasps

    from dex_proposal import msgs as conv
    from dex_proposal.api import Proposer, Status, default_config, skeleton
    from dex_proposal.errors import ProposalError

    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

    class ProposalNode(Node):
        def __init__(self) -> None:
            super().__init__("dex_proposal")
            p = self.declare_parameter
            p("robot", "ur5e_leap")
            p("device", "cpu")
            p("n_candidates", 64)
            p("top_k", 20)
            p("seed", 0)
            p("table_z", 0.0)
            p("check_reach", True)
            p("auto_propose", True)
            p("marker_count", 5)
            p("base_frame", "base_link")
            p("iter_scale", 1.0)
            p("torch_threads", 1)
            p("warm_up", True)
            p("processes", 1)
            g = lambda k: self.get_parameter(k).value  # noqa: E731
            if int(g("torch_threads")) > 0 and str(g("device")) == "cpu":
                # process-wide; synthesis is thousands of small ops per step: a second intra-op
                # thread did not make it faster here but took a second core from the rest of the graph
                import torch

                torch.set_num_threads(int(g("torch_threads")))
            from dataclasses import replace

            cfg = default_config()
            table = float(g("table_z"))
            scale = float(g("iter_scale"))
            syn = replace(cfg.synthesis, device=str(g("device")), n_candidates=int(g("n_candidates")),
                          table_z=None if math.isnan(table) else table, iter_scale=scale)
            self.cfg = replace(cfg, synthesis=syn, top_k=int(g("top_k")), check_reach=bool(g("check_reach")),
                               processes=max(1, int(g("processes"))))
            self.seed = int(g("seed"))
            self.auto = bool(g("auto_propose"))
            self.warm = bool(g("warm_up"))
            self.marker_count = int(g("marker_count"))
            self.base_frame = str(g("base_frame"))
            self.proposer = Proposer(str(g("robot")), self.cfg)
            hand = self.proposer.hand
            self.hand_name = hand.cfg.name
            self.wrist_frame = hand.cfg.root_body
            self.joint_names = list(hand.cfg.joints)
            self.lock = threading.Lock()  # one synthesis at a time
            self.latest: PointCloud2 | None = None
            self.pending = threading.Event()
            self.pub = self.create_publisher(GraspProposalArray, "/dex/grasp_proposals", latched)
            self.pub_markers = self.create_publisher(MarkerArray, "/dex/markers", latched)
            self.create_subscription(PointCloud2, "/dex/object_cloud", self.on_cloud, latched,
                                     callback_group=MutuallyExclusiveCallbackGroup())
            self.create_service(ProposeGrasps, "/dex/propose_grasps", self.on_service,
                                callback_group=ReentrantCallbackGroup())
            self.worker = threading.Thread(target=self._auto_loop, daemon=True)
            self.stop = threading.Event()
            self.worker.start()
            self.get_logger().info(f"dex_proposal ready: {self.hand_name} on {self.cfg.synthesis.device}, "
                                   f"{self.cfg.synthesis.n_candidates} candidates, top {self.cfg.top_k}")

        # -------------------------------------------------------------- callbacks
        def on_cloud(self, msg: PointCloud2) -> None:
            self.latest = msg
            if self.auto:
                self.pending.set()

        def _auto_loop(self) -> None:
            if self.warm:  # before any request is served (a request meanwhile waits for the lock)
                try:
                    with self.lock:
                        t0 = time.perf_counter()
                        res = self.proposer.warm_up(progress=self._check_stop)
                    self.get_logger().info(f"warm-up synthesis in {time.perf_counter() - t0:.1f} s "
                                           f"({res.status.value})")
                except _Stopping:
                    self.get_logger().info("warm-up synthesis abandoned: the node is shutting down")
                    return
                except Exception as exc:  # noqa: BLE001 - a failed warm-up costs only time
                    self.get_logger().warning(f"warm-up failed: {type(exc).__name__}: {exc}")
            while not self.stop.is_set():
                if not self.pending.wait(0.2):
                    continue
                self.pending.clear()
                msg = self.latest
                if msg is not None:
                    self.run(msg, self.seed, self.cfg.top_k)

        def on_service(self, request, response):
            cloud = request.cloud
            if int(cloud.width) * int(cloud.height) == 0:
                if self.latest is None:
                    response.success = False
                    response.status = Status.EMPTY_CLOUD.value
                    response.message = "empty request cloud and no cloud received on /dex/object_cloud yet"
                    response.proposals = GraspProposalArray()
                    response.proposals.header.frame_id = self.base_frame
                    return response
                cloud = self.latest
            seed = int(request.seed) if request.seed >= 0 else self.seed
            top_k = int(request.max_proposals) if request.max_proposals > 0 else self.cfg.top_k
            status, message, array = self.run(cloud, seed, top_k)
            response.success = status == Status.OK.value
            response.status = status
            response.message = message
            response.proposals = array
            return response

        def _check_stop(self, *_) -> None:
            """Synthesis progress callback (every 50 iterations): abandon the work on shutdown."""
            if self.stop.is_set():
                raise _Stopping()

        # -------------------------------------------------------------- work
        def run(self, msg: PointCloud2, seed: int, top_k: int) -> tuple[str, str, GraspProposalArray]:
            header = Header()
            header.stamp = msg.header.stamp
            header.frame_id = msg.header.frame_id or self.base_frame
            empty = GraspProposalArray()
            empty.header = header
            try:
                if msg.header.frame_id and msg.header.frame_id != self.base_frame:
                    status, message = "wrong_frame", f"cloud frame '{msg.header.frame_id}' is not '{self.base_frame}'"
                    self.get_logger().warning(message)
                    return status, message, empty
                points, normals = conv.cloud_from_msg(msg)
                with self.lock:
                    result = self.proposer.propose(points, normals, seed=seed, top_k=top_k, progress=self._check_stop)
                array = conv.proposal_array_msg(header, result, self.hand_name, self.wrist_frame, self.joint_names)
                text = f"{result.status.value}: {result.message} ({result.timings.get('total', 0.0):.1f} s)"
                if result.ok:
                    self.get_logger().info(text)
                else:
                    self.get_logger().warning(text)
                self.pub.publish(array)
                skel = [skeleton(self.proposer.hand, p.grasp) for p in result.proposals[: self.marker_count]]
                self.pub_markers.publish(conv.markers_msg(header, skel))
                return result.status.value, result.message, array
            except ProposalError as exc:
                self.get_logger().error(f"bad cloud: {exc}")
                return "bad_cloud", str(exc), empty
            except _Stopping:
                self.get_logger().info("synthesis abandoned: the node is shutting down")
                return "shutting_down", "the node is shutting down", empty
            except Exception as exc:  # never die on a message
                self.get_logger().error(f"proposal failed: {exc}\n{traceback.format_exc()}")
                return "internal_error", f"{type(exc).__name__}: {exc}", empty

    rclpy.init(args=argv if argv is not None else sys.argv)
    node = None
    try:
        node = build_node(ProposalNode)
        if node is None:  # stopped while it was being built
            return 0
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            # stop the synthesis thread before the interpreter goes: a daemon thread still inside
            # torch or MuJoCo at exit aborted the process (exit -6) in a graph shutdown test
            node.stop.set()
            node.worker.join(timeout=5.0)
            node.proposer.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
