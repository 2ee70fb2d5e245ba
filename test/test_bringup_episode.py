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


class RetryPorts(FakePorts):
    """FakePorts that can let go; ``verify`` answers and ``plan`` failures come from queues."""

    def __init__(self, verify_answers=(), plan_failures=0, **kw):
        super().__init__(**kw)
        self.verify_answers = list(verify_answers)
        self.plan_failures = plan_failures
        self.attempts_begun: list[int] = []

    def begin_attempt(self, attempt):
        self.attempts_begun.append(attempt)

    def plan(self, proposals, perception, goal, timeout, cancel):
        self.calls.append("plan")
        if self.plan_failures > 0:
            self.plan_failures -= 1
            raise StageFailed("planning: no_feasible_proposal")
        return {"proposal": proposals[0]}

    def verify(self, perception, plan, height, timeout, cancel):
        self.calls.append("verify")
        return self.verify_answers.pop(0) if self.verify_answers else (True, "lifted")

    def release(self, plan, timeout, cancel):
        self.calls.append("release")


def test_a_failed_lift_lets_go_and_tries_again_from_perception():
    ports = RetryPorts(verify_answers=[(False, "verify: the object is still where it stood (not lifted)")])
    res = GraspEpisode(ports, replace(default_config(), max_attempts=2)).run(Goal())
    assert res.success and res.attempts == 2 and res.stage_reached == "done" and "attempt 2/2" in res.reason
    assert res.failures == ["verify: verify: the object is still where it stood (not lifted)"]
    motion = ["reach", "preshape", "approach", "squeeze", "lift", "verify"]
    assert ports.calls == ["perceive", "propose", "plan", *motion, "release", "perceive", "propose", "plan", *motion]
    assert ports.attempts_begun == [1, 2]
    names = [k for k, _ in res.timings]
    assert names[:3] == ["perceive", "propose", "plan"] and "release" in names and "perceive#2" in names and "verify#2" in names


def test_attempts_are_bounded_and_the_last_failure_is_reported():
    bad = (False, "verify: the fingers closed on nothing")
    ports = RetryPorts(verify_answers=[bad, bad, bad])
    res = GraspEpisode(ports, replace(default_config(), max_attempts=2)).run(Goal())
    assert not res.success and res.attempts == 2 and res.stage_reached == "verify"
    assert ports.calls.count("release") == 1 and ports.calls.count("perceive") == 2
    # one try only: no release, no second perception
    ports = RetryPorts(verify_answers=[bad])
    res = GraspEpisode(ports, replace(default_config(), max_attempts=1)).run(Goal())
    assert not res.success and res.attempts == 1 and "release" not in ports.calls and ports.calls.count("perceive") == 1


def test_a_plan_failure_retries_without_motion_but_a_dead_node_does_not():
    ports = RetryPorts(plan_failures=1)
    res = GraspEpisode(ports, replace(default_config(), max_attempts=3)).run(Goal())
    assert res.success and res.attempts == 2
    assert "release" not in ports.calls and ports.calls.count("plan") == 2 and ports.stopped == 0
    ports = RetryPorts(fail={"perceive": NodeUnavailable("dex_perception", "no reply in 5 s")})
    res = GraspEpisode(ports, replace(default_config(), max_attempts=3)).run(Goal())
    assert not res.success and res.attempts == 1 and ports.calls == ["perceive"]
    assert "dex_perception" in res.reason


def test_ports_without_release_are_not_retried_after_motion():
    ports = FakePorts(verify=(False, "verify: dropped"))
    res = GraspEpisode(ports, replace(default_config(), max_attempts=3)).run(Goal())
    assert not res.success and res.attempts == 1 and ports.calls.count("perceive") == 1
