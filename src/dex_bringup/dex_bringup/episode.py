"""One grasp episode as a ROS-free state machine: perceive -> propose -> plan -> (confirm) -> reach
-> preshape -> approach -> squeeze -> lift -> verify -> done.

The episode talks to the world through :class:`EpisodePorts` (the orchestrator node implements them
with service calls and driver topics; tests implement them with fakes). It owns the order of the
stages, per-stage timeouts, cancellation, feedback and the result; it owns no maths and sends no
motion itself (the ports' executor does, after the safety checks).

Every port call gets the stage's timeout [s] and a cancel event, and must return within it or raise.
Failures are typed: :class:`StageFailed` (with a reason), :class:`NodeUnavailable` (a dead or
silent node, reported by name), :class:`Cancelled`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

STAGES = ("perceive", "propose", "plan", "reach", "preshape", "approach", "squeeze", "lift", "verify", "done")
ATTEMPT_SEED_STRIDE = 7919  # grasp-synthesis seed step between the tries of one episode
MOTION_STAGES = ("reach", "preshape", "approach", "squeeze", "lift", "release")


def attempt_seed(seed: int, attempt: int) -> int:
    """The grasp-synthesis seed of try ``attempt`` (1-based) of an episode whose first try uses
    ``seed``: a later try must not repeat the grasps that did not hold. (A negative ``seed``, "the
    proposal node's default", stays that for the first try only.)"""
    return int(seed) + ATTEMPT_SEED_STRIDE * (int(attempt) - 1)


class EpisodeError(Exception):
    """Base of the typed episode failures."""


class StageFailed(EpisodeError):
    """A stage could not complete; ``reason`` says why (shown to the user)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NodeUnavailable(StageFailed):
    """A node the stage needs is dead or silent."""

    def __init__(self, node: str, detail: str):
        super().__init__(f"node '{node}' is not responding: {detail}")
        self.node = node


class StageTimeout(StageFailed):
    """A stage ran past its timeout."""


class Cancelled(EpisodeError):
    """The goal was cancelled; motion has been stopped."""


@dataclass(frozen=True)
class EpisodeConfig:
    """Per-episode settings. ``default_config()`` then ``dataclasses.replace`` to override.

    Attributes:
        timeouts: Per-stage wall-clock limits [s].
        lift_height: Default lift after squeezing [m].
        require_confirm: Ask :meth:`EpisodePorts.confirm` between planning and the first motion
            (the real robot); the simulation auto-confirms.
        max_attempts: Tries per goal. A failed verify (the object was not lifted: the arm is up, clear
            of the table) opens the hand (:meth:`EpisodePorts.release`) and starts again from
            perception; a propose or plan failure (nothing moved) starts again at once. Each try calls
            :meth:`EpisodePorts.begin_attempt` first (the ports change the synthesis seed). Any other
            failure ends the episode. 1 = no second try.
    """

    timeouts: dict[str, float] = field(default_factory=lambda: {
        "perceive": 5.0, "propose": 20.0, "plan": 10.0, "confirm": 60.0, "reach": 20.0, "preshape": 5.0,
        "approach": 10.0, "squeeze": 5.0, "lift": 10.0, "verify": 6.0, "release": 5.0,
    })
    lift_height: float = 0.25
    require_confirm: bool = False
    max_attempts: int = 2


def default_config() -> EpisodeConfig:
    return EpisodeConfig()


@dataclass(frozen=True)
class Goal:
    """What to do (mirrors the ExecuteGrasp goal)."""

    object_id: str = ""
    target_prompt: str = ""
    proposal_policy: str = "best_reachable"
    dry_run: bool = False
    lift_height: float = 0.0  # <= 0: the configured default


@dataclass
class EpisodeResult:
    """What happened (mirrors the ExecuteGrasp result)."""

    success: bool
    stage_reached: str
    reason: str
    timings: list[tuple[str, float]]
    proposal: Any = None
    plan: Any = None
    attempts: int = 1
    failures: list[str] = field(default_factory=list)  # the reasons of the earlier, failed tries


class EpisodePorts(Protocol):
    """The world as the episode sees it. Each call honours ``timeout`` [s] and ``cancel``."""

    def perceive(self, goal: Goal, timeout: float, cancel: threading.Event) -> Any: ...
    def propose(self, perception: Any, goal: Goal, timeout: float, cancel: threading.Event) -> Any: ...
    def plan(self, proposals: Any, perception: Any, goal: Goal, timeout: float, cancel: threading.Event) -> Any: ...
    def confirm(self, plan: Any, timeout: float, cancel: threading.Event) -> bool: ...
    def reach(self, plan: Any, timeout: float, cancel: threading.Event) -> None: ...
    def preshape(self, plan: Any, timeout: float, cancel: threading.Event) -> None: ...
    def approach(self, plan: Any, timeout: float, cancel: threading.Event) -> None: ...
    def squeeze(self, plan: Any, timeout: float, cancel: threading.Event) -> None: ...
    def lift(self, plan: Any, height: float, timeout: float, cancel: threading.Event) -> None: ...
    def verify(self, perception: Any, plan: Any, height: float, timeout: float, cancel: threading.Event) -> tuple[bool, str]: ...
    def release(self, plan: Any, timeout: float, cancel: threading.Event) -> None: ...
    def begin_attempt(self, attempt: int) -> None: ...
    def stop_motion(self) -> None: ...
    def proposal_of(self, plan: Any) -> Any: ...


Feedback = Callable[[str, str, float], None]


class GraspEpisode:
    """Runs the stages in order. Construct per goal; :meth:`run` blocks until done.

    Args:
        ports: The world.
        cfg: Timeouts and defaults.
        feedback: Called as ``feedback(stage, message, progress)`` when a stage starts.
        cancel: Set it (from another thread) to cancel; motion is stopped and :meth:`run` returns.
    """

    def __init__(self, ports: EpisodePorts, cfg: EpisodeConfig | None = None, feedback: Feedback | None = None,
                 cancel: threading.Event | None = None):
        self.ports = ports
        self.cfg = cfg or default_config()
        self.feedback = feedback or (lambda stage, message, progress: None)
        self.cancel = cancel or threading.Event()
        self.timings: list[tuple[str, float]] = []  # (stage, [s]); a later try's stages are named "stage#k"
        self.stage = "perceive"
        self.attempt = 1

    def _enter(self, stage: str, message: str) -> float:
        if self.cancel.is_set():
            raise Cancelled(f"cancelled before {stage}")
        self.stage = stage
        k = STAGES.index(stage) if stage in STAGES else STAGES.index("verify")  # release: after verify
        self.feedback(stage, message, k / (len(STAGES) - 1))
        return time.monotonic()

    def _leave(self, stage: str, t0: float, key: str | None = None) -> None:
        elapsed = time.monotonic() - t0
        self.timings.append((stage if self.attempt == 1 else f"{stage}#{self.attempt}", elapsed))
        limit = self.cfg.timeouts.get(key or stage)
        if limit is not None and elapsed > limit * 1.05 + 0.1:
            raise StageTimeout(f"{stage} took {elapsed:.1f} s, over its {limit:.1f} s timeout")
        if self.cancel.is_set():
            raise Cancelled(f"cancelled during {stage}")

    def _call(self, stage: str, message: str, fn, *args, key: str | None = None):
        t0 = self._enter(stage, message)
        out = fn(*args, self.cfg.timeouts.get(key or stage, 10.0), self.cancel)
        self._leave(stage, t0, key)
        return out

    def run(self, goal: Goal) -> EpisodeResult:
        """Run one episode (up to ``max_attempts`` tries); never raises for episode failures (they
        become the result)."""
        failures: list[str] = []
        attempts = max(1, int(self.cfg.max_attempts))
        for attempt in range(1, attempts + 1):
            self.attempt = attempt
            result, retry = self._attempt(goal, attempt, attempts)
            result.attempts, result.failures = attempt, list(failures)
            if result.success or not retry or attempt == attempts:
                if attempt > 1:
                    result.reason += f" (attempt {attempt}/{attempts}; before: {'; '.join(failures)})"
                return result
            failures.append(f"{result.stage_reached}: {result.reason}")
            if result.stage_reached == "verify":  # the arm is up and the hand closed on nothing: let go
                try:
                    self._call("release", f"letting go to try again ({attempt + 1}/{attempts})", self.ports.release,
                               result.plan)
                except (StageFailed, Cancelled) as exc:
                    self._stop(True)
                    reason = exc.reason if isinstance(exc, StageFailed) else f"cancelled: {exc}"
                    return EpisodeResult(False, "release", reason, self.timings, result.proposal, result.plan,
                                         attempt, failures)
        raise AssertionError("unreachable")

    def _attempt(self, goal: Goal, attempt: int, attempts: int) -> tuple[EpisodeResult, bool]:
        """One try: ``(result, whether another try may follow)``."""
        height = goal.lift_height if goal.lift_height > 0 else self.cfg.lift_height
        plan = None
        moved = False
        tag = f" (attempt {attempt}/{attempts})" if attempts > 1 else ""
        begin = getattr(self.ports, "begin_attempt", None)
        if begin is not None:
            begin(attempt)
        try:
            perception = self._call("perceive", "segmenting the target object" + tag, self.ports.perceive, goal)
            proposals = self._call("propose", "synthesising grasps" + tag, self.ports.propose, perception, goal)
            plan = self._call("plan", "planning a collision-free reach" + tag, self.ports.plan, proposals, perception, goal)
            if goal.dry_run:
                return EpisodeResult(True, "plan", "dry run: plan found, no motion sent", self.timings,
                                     self.ports.proposal_of(plan), plan), False
            if self.cfg.require_confirm:
                t0 = time.monotonic()
                ok = self.ports.confirm(plan, self.cfg.timeouts.get("confirm", 60.0), self.cancel)
                self.timings.append(("confirm", time.monotonic() - t0))
                if not ok:
                    return EpisodeResult(False, "plan", "motion not confirmed by the operator", self.timings,
                                         self.ports.proposal_of(plan), plan), False
            moved = True
            self._call("reach", "moving the arm to the pre-grasp", self.ports.reach, plan)
            self._call("preshape", "shaping the hand", self.ports.preshape, plan)
            self._call("approach", "approaching the grasp", self.ports.approach, plan)
            self._call("squeeze", "squeezing", self.ports.squeeze, plan)
            t0 = self._enter("lift", f"lifting {height:.2f} m")
            self.ports.lift(plan, height, self.cfg.timeouts["lift"], self.cancel)
            self._leave("lift", t0)
            t0 = self._enter("verify", "checking the object followed the hand")
            ok, why = self.ports.verify(perception, plan, height, self.cfg.timeouts["verify"], self.cancel)
            self._leave("verify", t0)
            if not ok:
                return EpisodeResult(False, "verify", why, self.timings, self.ports.proposal_of(plan), plan), \
                    hasattr(self.ports, "release")
            self.feedback("done", why, 1.0)
            return EpisodeResult(True, "done", why, self.timings, self.ports.proposal_of(plan), plan), False
        except Cancelled as exc:
            self._stop(moved)
            return EpisodeResult(False, self.stage, f"cancelled: {exc}", self.timings,
                                 self.ports.proposal_of(plan) if plan is not None else None, plan), False
        except StageFailed as exc:
            self._stop(moved and self.stage in MOTION_STAGES)
            retry = (not moved and self.stage in ("propose", "plan")
                     and not isinstance(exc, (NodeUnavailable, StageTimeout)))
            return EpisodeResult(False, self.stage, exc.reason, self.timings,
                                 self.ports.proposal_of(plan) if plan is not None else None, plan), retry
        except Exception as exc:  # a bug in a port must not take the orchestrator down
            self._stop(moved)
            return EpisodeResult(False, self.stage, f"internal error in {self.stage}: {type(exc).__name__}: {exc}",
                                 self.timings, None, plan), False

    def _stop(self, moved: bool) -> None:
        if moved:
            try:
                self.ports.stop_motion()
            except Exception:  # stopping is best effort; the failure is already being reported
                pass
