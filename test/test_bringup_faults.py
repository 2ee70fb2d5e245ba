"""Faults around the orchestrator: a node that dies, and comes back.

A reduced graph (the sim, perception and the orchestrator of ``config/graph/dexgrasp.yaml``,
resolved for ur5e_leap and started with :class:`dex_bringup.launcher.Launcher`, so that one node
can be killed and restarted; ``dexgrasp launch`` would stop the graph when a node exits):

1. perception is killed (SIGKILL, like a crash) before the goal: the goal fails at ``perceive``
   with a reason naming ``dex_perception``, and the orchestrator keeps running;
2. perception is restarted: the next goal gets past ``perceive`` and fails at ``propose``
   naming ``dex_proposal`` (not started here), so a node that is absent is reported by name
   too, and nothing from the failed goal breaks the next one.

Goals go through the user's client (``dexgrasp episode --json``). The cancel-mid-motion fault
runs on the full graph in test_bringup_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

from conftest import require_built_interfaces  # noqa: E402

require_built_interfaces()

from dex_bringup.graph import load_graph  # noqa: E402
from dex_bringup.launcher import Launcher, node_command  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROBOT = "ur5e_leap"
KEEP = ("dex_sim", "dex_perception", "dex_orchestrator")


def _episode(timeout: float = 120.0) -> dict:
    out = subprocess.run([sys.executable, "-m", "dex_bringup.cli", "episode", "--json", "--wait-server", "60"],
                         capture_output=True, text=True, timeout=timeout, cwd=REPO)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result (exit {out.returncode}):\n{out.stderr[-3000:]}"
    res = json.loads(lines[-1])
    assert out.returncode == 1 and res["status"] == "ABORTED", res
    return res


def _past_perceive(launcher, log: Path, limit: float, perception=None) -> dict:
    """Goals until one gets past perceive (perception starting: open3d import, first frame)."""
    deadline = time.monotonic() + limit
    while True:
        res = _episode()
        if res["stage_reached"] != "perceive":
            return res
        assert "perception" in res["reason"], res
        proc = perception or launcher.procs["dex_perception"]
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"perception never answered: {res}\n{log.read_text()[-4000:]}"
        time.sleep(1.0)


def test_a_dead_node_is_named_and_its_return_is_picked_up(tmp_path, monkeypatch):
    os.environ.setdefault("MUJOCO_GL", "egl")
    nodes = [n for n in load_graph().resolve("sim", {"robot": ROBOT, "num_objects": "1", "camera_rate_hz": "5.0",
                                                     "seed": "1002"}) if n.name in KEEP]
    assert [n.name for n in nodes] == list(KEEP)
    log = tmp_path / "nodes.log"
    out = open(log, "w")
    monkeypatch.setattr(sys, "stdout", out)  # the launcher pumps the nodes' output to sys.stdout
    launcher = Launcher(nodes, log=lambda text: out.write(text + "\n"))
    restarted = None
    try:
        launcher.start()
        # everything up: the goal gets past perceive and stops at propose (no dex_proposal here)
        res = _past_perceive(launcher, log, 240.0)
        assert res["stage_reached"] == "propose" and "dex_proposal" in res["reason"], res

        perception = launcher.procs["dex_perception"]
        os.killpg(perception.pid, signal.SIGKILL)  # a crash: no goodbye to the other nodes
        perception.wait(timeout=10)
        res = _episode()
        assert res["stage_reached"] == "perceive", res
        assert "dex_perception" in res["reason"] and "not responding" in res["reason"], res
        assert res["timings"] == [], res
        assert launcher.procs["dex_orchestrator"].poll() is None, "the orchestrator died with its perception"

        spec = next(n for n in nodes if n.name == "dex_perception")
        params = tmp_path / "params"
        params.mkdir()
        restarted = subprocess.Popen(node_command(spec, params), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        res = _past_perceive(launcher, log, 120.0, restarted)
        assert res["stage_reached"] == "propose", res
        assert "dex_proposal" in res["reason"] and "dex_perception" not in res["reason"], res
        assert [s for s, _ in res["timings"]] == ["perceive"], res  # perceive completed this time
        for name in ("dex_sim", "dex_orchestrator"):
            assert launcher.procs[name].poll() is None, f"{name} died:\n{log.read_text()[-4000:]}"
    finally:
        if restarted is not None and restarted.poll() is None:
            os.killpg(restarted.pid, signal.SIGINT)
            try:
                restarted.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(restarted.pid, signal.SIGKILL)
        codes = launcher.stop()
        out.close()
    assert codes["dex_orchestrator"] == 0 and codes["dex_sim"] == 0, (codes, log.read_text()[-4000:])
