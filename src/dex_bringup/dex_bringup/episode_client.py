"""``dexgrasp episode``: send one ExecuteGrasp goal to the orchestrator (``/dex/execute_grasp``) and
print its feedback and result.

Examples::

    dexgrasp launch sim robot:=ur5e_leap num_objects:=1      # in one terminal
    dexgrasp episode                                          # grasp the largest object
    dexgrasp episode --prompt "point 0.05 0.62 0.03" --lift-height 0.15
    dexgrasp episode --dry-run                                # perceive, propose, plan; no motion
    dexgrasp episode --reset-seed 7                           # sim: new scene (/sim/reset_episode) first
    dexgrasp episode --confirm                                # real robot: ask here before moving

Ctrl-C cancels the goal (the orchestrator stops the robot) and waits for its result. ``--json``
prints the result as one JSON line (status, success, stage_reached, reason, timings [s], the
proposal's id, the stages seen in feedback). Exit status: 0 success, 1 the episode failed,
2 usage error or no orchestrator, 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid

CONFIRM_SERVICE = "/dex/confirm_motion"
ACTION = "/dex/execute_grasp"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dexgrasp episode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default="", help="perception prompt (largest, nearest, 'point x y z' [m], ...)")
    p.add_argument("--object-id", default="", help="object id carried into the proposals")
    p.add_argument("--policy", default="", help="proposal policy (default best_reachable)")
    p.add_argument("--dry-run", action="store_true", help="plan only, send no motion")
    p.add_argument("--lift-height", type=float, default=0.0, help="lift [m] (<= 0: the orchestrator's default)")
    p.add_argument("--reset-seed", type=int, default=None, help="simulation only: reset the scene with this seed first")
    p.add_argument("--num-objects", type=int, default=0, help="objects for --reset-seed (<= 0: the sim's default)")
    p.add_argument("--confirm", action="store_true", help="answer the orchestrator's confirmation request here (y/N)")
    p.add_argument("--wait-server", type=float, default=30.0, help="wait this long for the orchestrator [s]")
    p.add_argument("--wait-answer", type=float, default=30.0,
                   help="wait this long for the orchestrator to accept the goal [s]")
    p.add_argument("--timeout", type=float, default=600.0, help="cancel the goal after this long [s]")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    return p


def adopt_goal(client, goal_id):
    """A goal handle for a goal that ``client`` sent as ``goal_id`` and the server accepted (its
    feedback arrives) but whose accept answer never reached us.

    With Fast DDS a service answer is dropped when the server has not yet matched the client's
    answer reader (discovery still running, e.g. on a loaded machine); the goal runs all the
    same. The result is asked for by id (``get_result_async``): an accepted goal answers when it
    ends; a goal the server never received answers at once with status UNKNOWN.
    """
    from rclpy.action.client import ClientGoalHandle

    answer = client._action_type.Impl.SendGoalService.Response(accepted=True)
    return ClientGoalHandle(client, goal_id, answer)


def _graph_seen(node) -> str:
    """What ``node`` discovered (for the no-server error): the ROS domain, the other nodes and the
    action servers, so that a wrong ``ROS_DOMAIN_ID`` or discovery range tells itself apart from a
    missing orchestrator."""
    from rclpy.action import get_action_server_names_and_types_by_node

    try:
        others = [(name, ns) for name, ns in node.get_node_names_and_namespaces() if name != node.get_name()]
        nodes = sorted(f"{ns.rstrip('/')}/{name}" for name, ns in others)
        actions = sorted({action for name, ns in others
                          for action, _types in get_action_server_names_and_types_by_node(node, name, ns)})
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the error it explains
        return f"the graph could not be read ({exc})"
    domain = os.environ.get("ROS_DOMAIN_ID", "0 (unset)")
    scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET (unset)")
    return (f"ROS_DOMAIN_ID={domain}, ROS_AUTOMATIC_DISCOVERY_RANGE={scope}; "
            f"{len(nodes)} other node(s) seen{': ' + ', '.join(nodes[:8]) if nodes else ''}; "
            f"action servers seen: {', '.join(actions) if actions else 'none'}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import rclpy
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions

    from unique_identifier_msgs.msg import UUID

    from dex_interfaces.action import ExecuteGrasp

    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = Node("dexgrasp_episode_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    done_spinning = threading.Event()

    def spin() -> None:
        while not done_spinning.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda _s, _f: interrupted.set())
    signal.signal(signal.SIGTERM, lambda _s, _f: interrupted.set())
    stages: list[str] = []
    status_names = {v: k.replace("STATUS_", "") for k, v in vars(GoalStatus).items() if k.startswith("STATUS_")}

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    def wait(future, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while not future.done():
            if time.monotonic() > deadline or interrupted.is_set():
                return False
            time.sleep(0.02)
        return True

    client = None
    try:
        if args.reset_seed is not None:
            from dex_interfaces.srv import ResetEpisode

            reset = node.create_client(ResetEpisode, "/sim/reset_episode")
            if not reset.wait_for_service(timeout_sec=args.wait_server):
                say("error: /sim/reset_episode is not available (is `dexgrasp launch sim` running?)")
                return 2
            fut = reset.call_async(ResetEpisode.Request(seed=args.reset_seed, num_objects=args.num_objects))
            if not wait(fut, 60.0) or not fut.result().success:
                say(f"error: reset failed: {fut.result().message if fut.done() else 'no answer'}")
                return 2
            say(f"reset: {fut.result().message}")

        client = ActionClient(node, ExecuteGrasp, ACTION)
        if not client.wait_for_server(timeout_sec=args.wait_server):
            say(f"error: no ExecuteGrasp server on {ACTION} (is the orchestrator running?); {_graph_seen(node)}")
            return 2
        confirm_asked = threading.Event()

        def ask(message: str) -> None:
            from std_srvs.srv import SetBool

            answer = input(f"{message}\nexecute? [y/N] ").strip().lower() in ("y", "yes")
            cli = node.create_client(SetBool, CONFIRM_SERVICE)
            if cli.wait_for_service(timeout_sec=5.0):
                res = cli.call_async(SetBool.Request(data=answer))
                wait(res, 10.0)

        def on_feedback(msg) -> None:
            feedback_seen.set()
            fb = msg.feedback
            if not stages or stages[-1] != fb.stage:
                stages.append(fb.stage)
            say(f"[{fb.stage:>8}] {100 * fb.progress:5.1f} %  {fb.message}")
            if args.confirm and CONFIRM_SERVICE in fb.message and not confirm_asked.is_set():
                confirm_asked.set()
                threading.Thread(target=ask, args=(fb.message,), daemon=True).start()

        goal = ExecuteGrasp.Goal(object_id=args.object_id, target_prompt=args.prompt, proposal_policy=args.policy,
                                 dry_run=args.dry_run, lift_height=args.lift_height)
        feedback_seen = threading.Event()
        for send in range(1, 3):  # a goal request lost on the way is sent once more
            goal_id = UUID(uuid=list(uuid.uuid4().bytes))
            sent = client.send_goal_async(goal, feedback_callback=on_feedback, goal_uuid=goal_id)
            adopted = not wait(sent, args.wait_answer)
            if adopted:
                # the answer did not come: lost (see adopt_goal), or the request was. Ask for the goal's
                # result by its id: a goal the orchestrator runs answers when it ends, one it never
                # got answers at once with status UNKNOWN
                handle = adopt_goal(client, goal_id)
                say(f"warning: no answer to the goal within {args.wait_answer:g} s"
                    + (" but its feedback arrives" if feedback_seen.is_set() else "")
                    + ": following it by its id (DDS lost a message under load?)")
            else:
                handle = sent.result()
            if not handle.accepted:
                say("error: the goal was rejected (another episode is running?)")
                return 2
            result_future = handle.get_result_async()
            deadline = time.monotonic() + args.timeout
            cancelled = False
            while not result_future.done():
                if (interrupted.is_set() or time.monotonic() > deadline) and not cancelled:
                    say("cancelling the goal ...")
                    handle.cancel_goal_async()
                    cancelled = True
                    deadline = time.monotonic() + 30.0
                elif cancelled and time.monotonic() > deadline:
                    say("error: no result after the cancel")
                    return 2
                time.sleep(0.05)
            if not (adopted and result_future.result().status == GoalStatus.STATUS_UNKNOWN):
                break
            say("warning: the orchestrator does not know the goal (the request was lost)"
                + ("; sending it again" if send < 2 else ""))
        else:
            say("error: the goal was not answered")
            return 2
        wrapped = result_future.result()
        res, status = wrapped.result, status_names.get(wrapped.status, str(wrapped.status))
        if args.json:
            print(json.dumps({"status": status, "success": bool(res.success), "stage_reached": res.stage_reached,
                              "reason": res.reason, "timings": [[t.stage, t.duration_s] for t in res.timings],
                              "proposal_id": res.proposal.id, "feedback_stages": stages}), flush=True)
        else:
            say(f"{status}: {'success' if res.success else 'failure'} at {res.stage_reached}: {res.reason}")
            for t in res.timings:
                say(f"  {t.stage:>8} {t.duration_s:7.2f} s")
            if res.proposal.id:
                say(f"  proposal {res.proposal.id} (score {res.proposal.score:.3f})")
        if wrapped.status == GoalStatus.STATUS_CANCELED:
            return 130
        return 0 if res.success else 1
    finally:
        done_spinning.set()
        spinner.join(timeout=2.0)
        executor.shutdown(timeout_sec=1.0)
        if client is not None:
            client.destroy()  # destroy_node leaves actions alive, and the node with them
        node.destroy_node()
        rclpy.try_shutdown(context=context)


if __name__ == "__main__":
    sys.exit(main())
