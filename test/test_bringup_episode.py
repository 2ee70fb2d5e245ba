"""The grasp episode state machine with fake ports: order, dry run, failures by name, cancel, timeouts."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from dex_bringup.episode import (
    STAGES,
    Goal,
    GraspEpisode,
    NodeUnavailable,
    StageFailed,
    default_config,
)


class FakePorts:
    def __init__(self, fail: dict | None = None, delay: dict | None = None, confirm: bool = True, verify=(True, "lifted")):
        self.calls: list[str] = []
        self.fail = fail or {}
        self.delay = delay or {}
        self.confirm_answer = confirm
        self.verify_answer = verify
        self.stopped = 0

    def _do(self, name, timeout, cancel):
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]
        end = time.monotonic() + self.delay.get(name, 0.0)
        while time.monotonic() < end:
            if cancel.is_set():
                return  # a motion port stops early when cancelled
            time.sleep(0.005)

    def perceive(self, goal, timeout, cancel):
        self._do("perceive", timeout, cancel)
        return {"prompt": goal.target_prompt}

    def propose(self, perception, goal, timeout, cancel):
        self._do("propose", timeout, cancel)
        return ["p0", "p1"]

    def plan(self, proposals, perception, goal, timeout, cancel):
        self._do("plan", timeout, cancel)
        return {"proposal": proposals[0]}

    def confirm(self, plan, timeout, cancel):
        self.calls.append("confirm")
        return self.confirm_answer

    def reach(self, plan, timeout, cancel):
        self._do("reach", timeout, cancel)

    def preshape(self, plan, timeout, cancel):
        self._do("preshape", timeout, cancel)

    def approach(self, plan, timeout, cancel):
        self._do("approach", timeout, cancel)

    def squeeze(self, plan, timeout, cancel):
        self._do("squeeze", timeout, cancel)

    def lift(self, plan, height, timeout, cancel):
        self.lift_height = height
        self._do("lift", timeout, cancel)

    def verify(self, perception, plan, height, timeout, cancel):
        self._do("verify", timeout, cancel)
        return self.verify_answer

    def stop_motion(self):
        self.stopped += 1

    def proposal_of(self, plan):
        return plan["proposal"]


def test_success_runs_every_stage_in_order_with_feedback():
    ports = FakePorts()
    seen = []
    result = GraspEpisode(ports, feedback=lambda s, m, p: seen.append((s, p))).run(Goal(lift_height=0.3))
    assert result.success and result.stage_reached == "done" and result.proposal == "p0"
    assert ports.calls == ["perceive", "propose", "plan", "reach", "preshape", "approach", "squeeze", "lift", "verify"]
    assert [s for s, _ in seen] == list(STAGES)
    assert [p for _, p in seen] == sorted(p for _, p in seen) and seen[-1][1] == 1.0
    assert [s for s, _ in result.timings] == ports.calls
    assert ports.lift_height == 0.3 and ports.stopped == 0


def test_default_lift_height():
    ports = FakePorts()
    GraspEpisode(ports).run(Goal())
    assert ports.lift_height == default_config().lift_height


def test_dry_run_sends_no_motion():
    ports = FakePorts()
    result = GraspEpisode(ports).run(Goal(dry_run=True))
    assert result.success and result.stage_reached == "plan"
    assert ports.calls == ["perceive", "propose", "plan"]


def test_dead_node_is_named_and_nothing_moves():
    ports = FakePorts(fail={"perceive": NodeUnavailable("dex_perception", "service /dex/segment_object unavailable")})
    result = GraspEpisode(ports).run(Goal())
    assert not result.success and result.stage_reached == "perceive"
    assert "dex_perception" in result.reason and ports.calls == ["perceive"] and ports.stopped == 0


def test_failure_during_motion_stops_the_robot():
    ports = FakePorts(fail={"approach": StageFailed("arm did not reach the grasp pose")})
    result = GraspEpisode(ports).run(Goal())
    assert not result.success and result.stage_reached == "approach"
    assert result.reason == "arm did not reach the grasp pose" and ports.stopped == 1


def test_port_bug_becomes_a_result_not_a_crash():
    ports = FakePorts(fail={"squeeze": ZeroDivisionError("oops")})
    result = GraspEpisode(ports).run(Goal())
    assert not result.success and "internal error in squeeze" in result.reason and ports.stopped == 1


def test_cancel_mid_motion_stops_the_arm():
    ports = FakePorts(delay={"reach": 5.0})
    cancel = threading.Event()
    episode = GraspEpisode(ports, cancel=cancel)
    threading.Timer(0.1, cancel.set).start()
    t0 = time.monotonic()
    result = episode.run(Goal())
    assert time.monotonic() - t0 < 2.0
    assert not result.success and result.stage_reached == "reach" and result.reason.startswith("cancelled")
    assert ports.stopped == 1 and "preshape" not in ports.calls


def test_stage_over_its_timeout_fails():
    cfg = default_config()
    cfg = replace(cfg, timeouts={**cfg.timeouts, "propose": 0.05})
    ports = FakePorts(delay={"propose": 0.3})
    result = GraspEpisode(ports, cfg).run(Goal())
    assert not result.success and result.stage_reached == "propose" and "timeout" in result.reason


def test_unconfirmed_plan_does_not_move():
    cfg = replace(default_config(), require_confirm=True)
    ports = FakePorts(confirm=False)
    result = GraspEpisode(ports, cfg).run(Goal())
    assert not result.success and result.stage_reached == "plan" and "confirm" in ports.calls
    assert "reach" not in ports.calls


def test_verify_failure_is_reported():
    ports = FakePorts(verify=(False, "no object above the table near the hand"))
    result = GraspEpisode(ports).run(Goal())
    assert not result.success and result.stage_reached == "verify" and "no object" in result.reason
