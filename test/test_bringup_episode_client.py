"""``dexgrasp episode`` (dex_bringup.episode_client) when the orchestrator's answer to the goal is lost.

With Fast DDS, a service answer sent before the server has matched the client's answer reader is
dropped (rmw_fastrtps waits 100 ms for the match, then gives up); on a loaded machine the goal
then runs while the client hears nothing but its feedback. CI once failed that way. The client
follows such a goal by its id. Here a fake ExecuteGrasp server in this process runs the goal,
and the client's goal future is replaced by one that never completes, which is what a lost
answer looks like from the client; a lost request is one never sent.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.ros

from conftest import require_built_interfaces  # noqa: E402

require_built_interfaces()
import rclpy  # noqa: E402
from rclpy.action import ActionServer  # noqa: E402
from rclpy.action.client import ActionClient  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from rclpy.task import Future  # noqa: E402

from dex_bringup import episode_client  # noqa: E402
from dex_interfaces.action import ExecuteGrasp  # noqa: E402


class FakeOrchestrator:
    """An ExecuteGrasp server that sends ``feedback_count`` feedback messages ``period`` [s] apart
    after waiting ``delay`` [s], then aborts the goal at ``plan`` with a recognisable reason."""

    def __init__(self, delay: float = 0.0, feedback_count: int = 3, period: float = 0.3):
        self.delay, self.feedback_count, self.period = delay, feedback_count, period
        self.goals = 0
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("fake_orchestrator", context=self.context)
        self.server = ActionServer(self.node, ExecuteGrasp, episode_client.ACTION, self._execute)
        self.executor = MultiThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _execute(self, handle):
        self.goals += 1
        time.sleep(self.delay)
        for k in range(self.feedback_count):
            handle.publish_feedback(ExecuteGrasp.Feedback(stage="plan", progress=k / 10.0, message=f"step {k}"))
            time.sleep(self.period)
        handle.abort()
        return ExecuteGrasp.Result(success=False, stage_reached="plan", reason="fake: nothing reachable")

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.server.destroy()  # else it stays discoverable (destroy_node leaves actions alive)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)


NO_SERVER = "error: no ExecuteGrasp server on"


def _client(make_server, capsys, wait_answer: str) -> tuple[FakeOrchestrator, int, object]:
    """Run ``dexgrasp episode --json`` against ``make_server()`` (closed after);
    ``(the server, exit code, captured)``.

    These tests are about answers lost after discovery. CI once failed one of them before it:
    the client did not discover the in-process server within 30 s (``NO_SERVER``; seen once in CI;
    not reproduced here on 2 cores, idle or under load, nor with UDP only). At that
    time ``close`` left each fake server's action alive (``Node.destroy_node`` does not destroy
    actions), so earlier tests' dead servers stayed in the graph; that is fixed, but it is not
    proven to be the cause. So that case is run once more with a fresh server, and the first
    attempt's error (with the graph the client saw) is printed to the log.
    """
    for attempt in range(2):
        server = make_server()
        try:
            code = episode_client.main(["--json", "--wait-server", "30", "--wait-answer", wait_answer])
        finally:
            server.close()
        out = capsys.readouterr()
        if attempt == 1 or not (code == 2 and NO_SERVER in out.err):
            break
        print(f"discovery failed, once more with a fresh server: {out.err.strip()}", file=sys.__stderr__)
    return server, code, out


@pytest.fixture
def lose_goal_answers(monkeypatch):
    """The client's goal request goes out; its answer never arrives."""
    send = ActionClient.send_goal_async

    def send_and_lose(self, *args, **kwargs):
        send(self, *args, **kwargs)
        return Future()

    monkeypatch.setattr(ActionClient, "send_goal_async", send_and_lose)
    monkeypatch.setattr(episode_client.signal, "signal", lambda *_a: None)  # keep pytest's handlers


def test_a_running_goal_whose_answer_was_lost_is_followed_to_its_result(lose_goal_answers, capsys):
    server, code, out = _client(lambda: FakeOrchestrator(feedback_count=12, period=0.25), capsys, "1.5")
    assert server.goals == 1
    assert code == 1, out  # an episode that failed, not a client error (2)
    assert "no answer to the goal within 1.5 s but its feedback arrives: following it by its id" in out.err
    res = json.loads([ln for ln in out.out.splitlines() if ln.startswith("{")][-1])
    assert res["status"] == "ABORTED" and res["stage_reached"] == "plan"
    assert res["reason"] == "fake: nothing reachable" and res["feedback_stages"] == ["plan"]


def test_a_goal_with_no_answer_and_no_feedback_yet_is_followed_by_its_id(lose_goal_answers, capsys):
    """The answer and the first feedback are both lost (they come before discovery completes): the
    client asks for the result by the goal's id, which the orchestrator answers when the goal ends."""
    server, code, out = _client(lambda: FakeOrchestrator(delay=3.0, feedback_count=1), capsys, "1.0")
    assert server.goals == 1 and code == 1, out
    assert "no answer to the goal within 1 s: following it by its id" in out.err
    res = json.loads([ln for ln in out.out.splitlines() if ln.startswith("{")][-1])
    assert res["status"] == "ABORTED" and res["reason"] == "fake: nothing reachable"


@pytest.fixture
def lose_goal_requests(monkeypatch):
    """The first ``lost[0]`` goal requests never reach the server (nor does any answer)."""
    send = ActionClient.send_goal_async
    lost = [1]

    def maybe_send(self, *args, **kwargs):
        if lost[0] > 0:
            lost[0] -= 1
            return Future()
        return send(self, *args, **kwargs)

    monkeypatch.setattr(ActionClient, "send_goal_async", maybe_send)
    monkeypatch.setattr(episode_client.signal, "signal", lambda *_a: None)
    return lost


def test_a_lost_goal_request_is_sent_again(lose_goal_requests, capsys):
    server, code, out = _client(lambda: FakeOrchestrator(feedback_count=2, period=0.1), capsys, "1.0")
    assert server.goals == 1 and code == 1, out  # the second request ran, once
    assert "does not know the goal (the request was lost); sending it again" in out.err
    res = json.loads([ln for ln in out.out.splitlines() if ln.startswith("{")][-1])
    assert res["status"] == "ABORTED" and res["stage_reached"] == "plan"


def test_a_goal_never_received_is_an_error(lose_goal_requests, capsys):
    lose_goal_requests[0] = 2
    server, code, out = _client(lambda: FakeOrchestrator(), capsys, "1.0")
    assert server.goals == 0 and code == 2, out
    assert "the goal was not answered" in out.err and not out.out.strip()


def test_no_orchestrator_is_a_usage_error_that_names_what_was_seen(monkeypatch, capsys):
    """Without a server the client exits 2 and says which domain it looked in and what it found
    there (another node, but no action server)."""
    monkeypatch.setattr(episode_client.signal, "signal", lambda *_a: None)
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    bystander = Node("bystander", context=context)
    try:
        code = episode_client.main(["--json", "--wait-server", "1.5"])
    finally:
        bystander.destroy_node()
        rclpy.try_shutdown(context=context)
    err = capsys.readouterr().err
    assert code == 2
    assert NO_SERVER in err and f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}" in err
    assert "/bystander" in err and "action servers seen: none" in err
