"""The whole graph end to end, per robot combo: ``dexgrasp launch sim robot:=<combo>`` as a
subprocess, then ExecuteGrasp goals to the orchestrator (``dexgrasp episode --json``, the user's
client) until one episode succeeds, a cancel in the middle of the reach, and the shutdown.

* success: the stack's success rate is not 100 % (proposals on a partial cloud, reachability, the
  open-loop squeeze), so up to ``len(SEEDS[combo])`` episodes run on fresh one-object scenes
  (``/sim/reset_episode`` with the seed, through ``dexgrasp episode --reset-seed``) and at least one
  must end ``SUCCEEDED`` at stage ``done`` with the stack's own verdict (object gone from its
  place and held). The seeds are ones that succeeded when this test was written; every attempt,
  failed or not, must be a well-formed result (a stage, a reason, timings of the stages run).
* cancel: a goal is cancelled once the arm is moving along the reach; the goal must end
  ``CANCELED``, the arm's joint velocities must come to ~0 and the arm must stop short of the
  reach's end (the trajectory on the arm driver topic), and a hold command must have been sent.
* shutdown: SIGINT to the launcher stops every node (exit 0) and leaves no process of this
  test's ROS domain behind.

Node parameters that keep a combo within a few minutes on 2 cores come in as launch arguments:
one object, camera at 5 Hz (rendering is the sim's main CPU cost), 32 candidates, no background
synthesis (the graph's default). No assertion is about speed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

from conftest import require_built_interfaces  # noqa: E402

require_built_interfaces()
import rclpy  # noqa: E402

from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dex_bringup.episode import STAGES  # noqa: E402
from dex_description.config import load_robot_config  # noqa: E402
from dex_description.drivers import arm_map  # noqa: E402
from dex_interfaces.action import ExecuteGrasp  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Seeds of one-object scenes (builtin/test objects) whose episodes succeeded when this was written.
SEEDS = {"ur5e_leap": [1003, 1004, 1005], "ur10e_shadow": [1000, 1001, 1002]}
START_TIMEOUT_S = 180.0
EPISODE_TIMEOUT_S = 240.0
NODES = ("dex_sim", "dex_perception", "dex_proposal", "dex_planning", "dex_orchestrator", "robot_markers")


def _ros_env() -> dict:
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    return env


class Graph:
    """``dexgrasp launch sim robot:=<combo> ...`` as a subprocess, its output in a log file."""

    def __init__(self, robot: str, log: Path, args: list[str]):
        self.robot = robot
        self.log = log
        self.out = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "dex_bringup.cli", "launch", "sim", f"robot:={robot}", *args],
                                     stdout=self.out, stderr=subprocess.STDOUT, env=_ros_env(), cwd=REPO)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 6000) -> str:
        return self.text()[-n:]

    def pids(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"\[launch\] started (\S+) \(pid (\d+)\)", self.text())}

    def alive(self) -> None:
        assert self.proc.poll() is None, f"the graph stopped:\n{self.tail()}"

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.out.close()
        return self.proc.returncode


def _running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return ") Z" not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def _domain_processes() -> list[str]:
    """Processes other than this one that run in this test's ROS domain (inherited environment)."""
    me = os.getpid()
    key = f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            if key in (d / "environ").read_bytes().split(b"\0"):
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                stat = (d / "stat").read_text()
                if ") Z" not in stat:
                    found.append(f"{d.name}: {cmd}")
        except OSError:
            continue
    return found


class Client:
    """In-process rclpy client: ExecuteGrasp, the joint states, the arm driver topic."""

    def __init__(self, robot: str):
        cfg = load_robot_config(robot)
        self.arm_names = list(arm_map(cfg).names)  # the arm driver's joint names
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("e2e_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.states: list[tuple[float, np.ndarray, np.ndarray]] = []  # (monotonic [s], arm q, arm qd) driver order
        self.arm_cmds: list[tuple[float, JointTrajectory]] = []
        self.node.create_subscription(JointState, cfg.arm.driver.state_topic or "/joint_states", self._on_state, 50)
        self.node.create_subscription(JointTrajectory, cfg.arm.driver.command_topic, self._on_arm, 10)
        self.action = ActionClient(self.node, ExecuteGrasp, "/dex/execute_grasp")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_state(self, msg: JointState) -> None:
        idx = {n: i for i, n in enumerate(msg.name)}
        if not all(n in idx for n in self.arm_names) or len(msg.velocity) != len(msg.name):
            return
        q = np.array([msg.position[idx[n]] for n in self.arm_names])
        qd = np.array([msg.velocity[idx[n]] for n in self.arm_names])
        with self.lock:
            self.states.append((time.monotonic(), q, qd))
            del self.states[:-2000]

    def _on_arm(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.arm_cmds.append((time.monotonic(), msg))

    def latest(self) -> tuple[float, np.ndarray, np.ndarray]:
        with self.lock:
            assert self.states, "no joint states"
            return self.states[-1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.executor.shutdown(timeout_sec=1)
        self.action.destroy()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _wait_future(future, graph: Graph, timeout: float):
    deadline = time.monotonic() + timeout
    while not future.done():
        graph.alive()
        assert time.monotonic() < deadline, f"no answer within {timeout} s:\n{graph.tail()}"
        time.sleep(0.05)
    return future.result()


def _episode(seed: int) -> tuple[int, dict, str]:
    """One goal through the user's client on a fresh scene; (exit code, JSON result, stderr)."""
    out = subprocess.run([sys.executable, "-m", "dex_bringup.cli", "episode", "--reset-seed", str(seed), "--num-objects",
                          "1", "--json", "--timeout", str(EPISODE_TIMEOUT_S)],
                         capture_output=True, text=True, timeout=EPISODE_TIMEOUT_S + 60, env=_ros_env(), cwd=REPO)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return out.returncode, (json.loads(lines[-1]) if lines else {}), out.stderr


@pytest.fixture(scope="module", params=sorted(SEEDS))
def stack(request, tmp_path_factory):
    """The running graph of one combo and a client; stopped at the end (the last test checks it)."""
    robot = request.param
    log = tmp_path_factory.mktemp(f"e2e_{robot}") / "graph.log"
    graph = Graph(robot, log, ["num_objects:=1", "camera_rate_hz:=5.0", f"seed:={SEEDS[robot][0]}"])
    client = Client(robot)
    state = {"robot": robot, "graph": graph, "client": client, "success_seed": None}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not client.action.wait_for_server(timeout_sec=0.5):
            graph.alive()
            assert time.monotonic() < deadline, f"no /dex/execute_grasp server:\n{graph.tail()}"
        while not ("proposal ready" in graph.text() or "dex_proposal ready" in graph.text()) or not client.states:
            graph.alive()
            assert time.monotonic() < deadline, f"the graph did not come up:\n{graph.tail()}"
            time.sleep(0.5)
        yield state
    finally:
        client.close()
        graph.stop()


def test_an_episode_succeeds(stack):
    graph, robot = stack["graph"], stack["robot"]
    attempts = []
    for seed in SEEDS[robot]:
        graph.alive()
        code, res, err = _episode(seed)
        attempts.append((seed, code, res))
        assert res, f"seed {seed}: no JSON result (exit {code}):\n{err[-3000:]}\n{graph.tail()}"
        # every outcome is well formed: a known stage, a reason, timings of stages that ran
        # (a second attempt, after a grasp that did not lift, adds "release" and "<stage>#2" timings)
        known = set(STAGES) | {"release"}
        assert res["stage_reached"] in known and res["reason"], res
        assert all(s.split("#")[0] in known for s, _ in res["timings"]) and all(d >= 0 for _, d in res["timings"]), res
        if res["success"]:
            assert code == 0 and res["status"] == "SUCCEEDED" and res["stage_reached"] == "done", res
            assert "held" in res["reason"] and res["proposal_id"], res
            # feedback for every stage, in order, for the attempt that succeeded (the last one,
            # "done", is published just before the result and may reach the client after it: seen
            # once in CI under load)
            fb = res["feedback_stages"]
            assert fb[-len(STAGES):] == list(STAGES) or fb[-len(STAGES) + 1:] == list(STAGES[:-1]), res
            assert set(res["feedback_stages"]) <= known, res
            last = max(int(s.split("#")[1]) if "#" in s else 1 for s, _ in res["timings"])
            tail = [s.split("#")[0] for s, _ in res["timings"] if (s.endswith(f"#{last}") if last > 1 else "#" not in s)]
            assert tail[-len(STAGES) + 1:] == list(STAGES[:-1]), res
            stack["success_seed"] = seed
            break
        assert code == 1 and res["status"] == "ABORTED", res
    assert stack["success_seed"] is not None, (
        f"{robot}: no successful episode in {len(attempts)}:\n" + "\n".join(f"seed {s}: {r}" for s, _, r in attempts)
        + f"\n{graph.tail()}")
    graph.alive()  # the graph survived every outcome


def test_cancel_mid_reach_stops_the_arm(stack):
    graph, client = stack["graph"], stack["client"]
    from dex_interfaces.srv import ResetEpisode

    reset = client.node.create_client(ResetEpisode, "/sim/reset_episode")
    seeds = ([stack["success_seed"]] if stack["success_seed"] is not None else []) + SEEDS[stack["robot"]]
    for seed in seeds:
        assert reset.wait_for_service(timeout_sec=10)
        assert _wait_future(reset.call_async(ResetEpisode.Request(seed=seed, num_objects=1)), graph, 60).success
        time.sleep(0.5)
        with client.lock:
            n_cmds = len(client.arm_cmds)
        handle = _wait_future(client.action.send_goal_async(ExecuteGrasp.Goal()), graph, 30)
        assert handle.accepted
        result_future = handle.get_result_async()
        # wait for the reach trajectory on the arm driver topic (or the end of a failed goal)
        deadline = time.monotonic() + EPISODE_TIMEOUT_S
        reach = None
        while reach is None and not result_future.done():
            graph.alive()
            assert time.monotonic() < deadline, graph.tail()
            with client.lock:
                if len(client.arm_cmds) > n_cmds:
                    reach = client.arm_cmds[n_cmds][1]
            time.sleep(0.02)
        if reach is None:  # no plan for this scene: try the next one
            continue
        names = list(reach.joint_names)
        order = [names.index(n) for n in client.arm_names]
        end = np.array(reach.points[-1].positions)[order]
        _, q_start, _ = client.latest()
        total = np.abs(end - q_start).max()
        assert total > 0.2, f"the reach is too short to cancel in its middle ({total:.3f} rad)"
        while np.abs(client.latest()[1] - q_start).max() < 0.1 * total:  # moving along the reach
            assert not result_future.done(), result_future.result().result.reason
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t_cancel = time.monotonic()
        _wait_future(handle.cancel_goal_async(), graph, 10)
        wrapped = _wait_future(result_future, graph, 30)
        assert wrapped.status == GoalStatus.STATUS_CANCELED, (wrapped.status, wrapped.result.reason)
        assert not wrapped.result.success and wrapped.result.reason.startswith("cancelled"), wrapped.result.reason
        assert wrapped.result.stage_reached == "reach", wrapped.result.stage_reached
        # the arm comes to rest (all joint speeds < 0.02 rad/s for 0.5 s) short of the reach's end
        rest_since = None
        while True:
            t, q, qd = client.latest()
            if np.abs(qd).max() < 0.02:
                rest_since = rest_since or t
                if t - rest_since > 0.5:
                    break
            else:
                rest_since = None
            if time.monotonic() - t_cancel >= 10.0:  # say whether the arm moved or the joint states went stale
                with client.lock:
                    recent = [(ts, qs) for ts, qs, _ in client.states if ts > t - 1.0]
                    n_after = sum(1 for ts, _ in client.arm_cmds if ts >= t_cancel)
                moved = np.abs(recent[-1][1] - recent[0][1]).max()
                pytest.fail(f"the arm still moves {qd} rad/s 10 s after the cancel: last joint state "
                            f"{time.monotonic() - t:.2f} s old, {len(recent)} states in its last second moved "
                            f"{moved:.4f} rad, {n_after} arm commands since the cancel\n{graph.tail()}")
            time.sleep(0.02)
        left = np.abs(end - q).max()
        assert left > 0.25 * total, f"the arm went on to the reach's end (left {left:.3f} of {total:.3f} rad)"
        with client.lock:
            after = [m for t, m in client.arm_cmds if t >= t_cancel]
        assert any(len(m.points) == 1 for m in after), "no hold command on the arm driver topic after the cancel"
        hold = np.array(next(m for m in after if len(m.points) == 1).points[0].positions)[order]
        assert np.abs(hold - q).max() < 0.1, (hold, q)  # held where it stopped
        graph.alive()
        return
    pytest.fail(f"no scene in {seeds} got as far as the reach:\n{graph.tail()}")


def test_shutdown_leaves_no_orphans(stack):
    graph = stack["graph"]
    pids = graph.pids()
    assert set(NODES) <= set(pids), pids
    code = graph.stop()
    assert code == 0, graph.tail()
    assert re.search(r"\[launch\] stopped: .*", graph.text()), graph.tail()
    stopped = re.search(r"\[launch\] stopped: (.*)", graph.text()).group(1)
    assert all(part.endswith("=0") for part in stopped.split(", ")), stopped  # every node exited cleanly
    deadline = time.monotonic() + 10
    while True:
        alive = [f"{n} ({p})" for n, p in pids.items() if _running(p)]
        left = _domain_processes()
        if not alive and not left:
            break
        assert time.monotonic() < deadline, f"left behind: {alive} {left}"
        time.sleep(0.2)
