"""The grasp episode in one process, without ROS: :class:`dex_bringup.episode.GraspEpisode` with
ports that call the algorithms directly and drive :class:`dex_sim.env.SimEnv` through its
driver-like command interface.

Used by the headless demo (``dexgrasp demo``) and the end-to-end benchmark
(``dexgrasp-e2e-bench``). The ROS orchestrator (:mod:`dex_bringup.orchestrator`) runs the same
episode with ports that call the nodes' services and topics instead.

What the stack sees is what a real robot would give it: the rendered depth + colour image, the
camera calibration, the joint states. Ground truth (object poses, contacts) is read only by
:func:`evaluate_lift`, after the episode, to score it (success = the object is at least
``success_height`` above the table and touches the hand after a ``hold_s`` hold).

Simulated time runs as fast as the CPU allows (not paced to the wall clock); the stage timings
reported are wall-clock times of this process, motion stages included.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dex_bringup.episode import (
    EpisodeConfig,
    EpisodeResult,
    GraspEpisode,
    Goal,
    StageFailed,
    attempt_seed,
)
from dex_bringup.episode import default_config as default_episode_config


@dataclass(frozen=True)
class SimEpisodeConfig:
    """Settings of the in-process simulated episode (``default_config()`` + ``replace``).

    Attributes:
        episode: Stage order, timeouts, default lift height.
        n_candidates: Grasp candidates synthesised per episode.
        top_k: Proposals handed to the planner.
        plan_budget: [s] planner selection budget.
        control_dt: [s] how often hand targets are streamed to the hand driver.
        settle_s: [s] extra time after a segment's end for the servos to catch up.
        track_tol: [rad] largest arm joint error after a segment (else the stage fails).
        verify_min_rise: Fraction of the lift height the perceived object must have risen.
        hold_s: [s] hold after the lift before scoring.
        success_height: [m] the object's lowest point above the table for a success.
        prompt: Perception prompt when the goal has none.
        self_filter_margin: [m] obstacle points less than this outside the robot's collision
            spheres (at the measured joints) are the robot itself, not obstacles (as in the orchestrator).
        preshape_tol: [rad] largest hand actuator error from the pre-grasp shape after the reach
            (coupled joints compared by their sum).
        preshape_wait_s: [s] how long the preshape stage waits for the hand to get there.
        held_radius: [m] verify looks for the lifted object within this distance of where it should be.
        held_margin: [m] scene points less than this outside the robot's spheres are the robot (verify).
        min_held_points: verify calls the lifted object held when at least this many points that are
            neither the table nor the robot are seen there, or else when the fingers are held short
            of the squeeze target (:func:`dex_bringup.orchestration.verify_verdict`).
        verify_hold_s: [s] verify holds the lifted object this long before it looks (2 s: with 1 s,
            objects that slipped out slowly passed verify and fell later; the e2e benchmark, seeds
            1000-1019, lifted 15/14 of 20 (LEAP/Shadow) with 1 s and 17/15 with 2 s, the extra
            lifts from second attempts after a slip was seen).
        verify_extra_height: [m] verify's perception workspace reaches this much higher than the
            table scene's (the lifted object is above it).
        iter_scale: Scale on every synthesis stage's iterations (1 = the proposal defaults).
        stage_iters: Stage name -> iterations, set after the scale (e.g. ``{"coarse": 120}``).
        squeeze_force: [N] the force-aware squeeze's force for the hand (0: joint-space squeeze), or
            None: the hand's robot YAML (``hand.synthesis.squeeze_force``).
        processes: Processes each synthesis's candidates are shared over (``ProposalConfig.processes``);
            default 2 where there are 2 cores or more. Interleaved on this 2-core machine (e2e benchmark,
            seeds 1000-1039 in chunks of 10, 1 and 2 processes alternating): LEAP depth -> trajectory
            p50 1.80 -> 1.40 s and 34 -> 36/40 lifted, Shadow 2.15 -> 2.02 s and 34 -> 35/40.
    """

    episode: EpisodeConfig = field(default_factory=default_episode_config)
    n_candidates: int = 32
    top_k: int = 16
    plan_budget: float = 3.0
    control_dt: float = 0.02
    settle_s: float = 0.4
    track_tol: float = 0.05
    verify_min_rise: float = 0.5
    hold_s: float = 2.0
    success_height: float = 0.15
    prompt: str = "largest"
    self_filter_margin: float = 0.03
    preshape_tol: float = 0.15
    preshape_wait_s: float = 1.5
    held_radius: float = 0.12
    held_margin: float = 0.01
    min_held_points: int = 10
    verify_hold_s: float = 2.0
    verify_extra_height: float = 0.4
    iter_scale: float = 1.0
    stage_iters: dict = field(default_factory=dict)
    squeeze_force: float | None = None
    processes: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))


def default_config() -> SimEpisodeConfig:
    return SimEpisodeConfig()


@dataclass
class Perceived:
    """The perceive stage's output."""

    points: np.ndarray
    normals: np.ndarray
    obstacles: np.ndarray
    centroid: np.ndarray
    depth_stamp: float  # wall-clock time the depth frame was taken [s] (time.monotonic)
    result: Any = None


@dataclass
class Planned:
    """The plan stage's output."""

    proposal: Any
    index: int
    selection: Any
    target: Any
    first_trajectory_s: float  # depth frame -> first executable trajectory [s] (wall clock)


class SimPorts:
    """:class:`dex_bringup.episode.EpisodePorts` over the algorithms and a :class:`SimEnv`.

    Args:
        env: The simulation (already reset).
        cfg: Settings.
        seed: Seed of the grasp synthesis.
        executor: Execution policy name (``open_loop``).
    """

    def __init__(self, env, cfg: SimEpisodeConfig | None = None, seed: int = 0, executor: str = "open_loop",
                 proposer=None, planner=None, perception=None):
        from dex_perception.camera import CameraModel

        self.env = env
        self.cfg = cfg or default_config()
        self.seed = seed
        self.robot = env.robot
        info = env.camera_info()
        self.camera = CameraModel.from_camera_info(info.width, info.height, info.K.ravel(), frame_id=info.frame_id)
        self.perception = perception or make_perception(env)
        self.proposer = proposer or make_proposer(self.robot, self.cfg)
        self.planner = planner or make_planner(self.robot)
        from dex_policy.executor import make_executor

        self.executor = make_executor(executor, self.robot, self.planner)
        from dex_bringup.orchestration import SelfFilter

        self.self_filter = SelfFilter(self.robot, self.cfg.self_filter_margin)
        self.frames: dict[str, np.ndarray] = {}  # images for reports: stage -> RGB
        self.log: dict[str, Any] = {}
        self.attempt = 1  # the episode's current try (begin_attempt)

    # -------------------------------------------------------------- perception, proposals, planning
    def _observe(self, prompt: str):
        frame = self.env.render()
        stamp = time.monotonic()
        res = self.perception.process(frame.depth, self.camera, frame.rgb, prompt)
        return frame, stamp, res

    def perceive(self, goal: Goal, timeout: float, cancel: threading.Event) -> Perceived:
        from dex_perception.errors import PerceptionError

        prompt = goal.target_prompt or self.cfg.prompt
        try:
            frame, stamp, res = self._observe(prompt)
        except PerceptionError as exc:
            raise StageFailed(f"perception: {exc}") from exc
        self.frames["scene"] = frame.rgb
        if res.num_objects == 0 or len(res.points) == 0:
            raise StageFailed("perception: no object on the table")
        a = res.analysis
        # obstacles: everything above the table that the camera saw, minus the robot itself (the
        # hand at home hangs in the camera's view; its own points would put the start in collision)
        arm_q, hand_q = self.env.model_joint_positions()
        obstacles = self.self_filter(a.candidate_points, arm_q, hand_q)
        return Perceived(res.points.astype(np.float64), res.normals.astype(np.float64),
                         obstacles, res.points.mean(axis=0).astype(np.float64), stamp, res)

    def begin_attempt(self, attempt: int) -> None:
        """A later try synthesises from another seed (the first try's grasps did not hold)."""
        self.attempt = attempt

    def propose(self, perceived: Perceived, goal: Goal, timeout: float, cancel: threading.Event):
        res = self.proposer.propose(perceived.points, perceived.normals, seed=attempt_seed(self.seed, self.attempt))
        self.log["proposal"] = {"status": str(res.status.value if hasattr(res.status, "value") else res.status),
                                "message": res.message, "timings": res.timings, "n": len(res.proposals)}
        if not res.ok:
            raise StageFailed(f"no grasp proposals: {res.message}")
        return res.proposals

    def plan(self, proposals, perceived: Perceived, goal: Goal, timeout: float, cancel: threading.Event) -> Planned:
        from dex_planning.interface import ProposalTarget
        from dex_planning.scene import PlanningScene, table_box

        arm_q, hand_q = self.env.model_joint_positions()
        targets = [ProposalTarget(f"p{i}", p.pregrasp.world_T_root, p.pregrasp.joints) for i, p in enumerate(proposals)]
        scene = PlanningScene((table_box(),), perceived.obstacles if len(perceived.obstacles) else None)
        sel = self.planner.select(arm_q, hand_q, targets, scene, min(self.cfg.plan_budget, timeout))
        self.log["plan"] = {"status": sel.status, "message": sel.message, "time_s": sel.planning_time,
                            "rejections": [(r.index, r.reason) for r in sel.rejections]}
        if not sel.success:
            raise StageFailed(f"planning: {sel.status}: {sel.message}")
        from dex_policy.executor import GraspTarget

        p = proposals[sel.index]
        target = GraspTarget(p.pregrasp.world_T_root, p.grasp.world_T_root, p.squeeze.world_T_root,
                             p.pregrasp.joints, p.grasp.joints, p.squeeze.joints)
        planned = Planned(p, sel.index, sel, target, time.monotonic() - perceived.depth_stamp)
        self.log.setdefault("first_trajectory_s", planned.first_trajectory_s)  # the first try's
        return planned

    def confirm(self, plan: Planned, timeout: float, cancel: threading.Event) -> bool:
        return True  # the simulation needs no operator

    # -------------------------------------------------------------- motion
    def _run(self, t: np.ndarray, arm_q: np.ndarray | None, hand_q: np.ndarray, timeout: float,
             cancel: threading.Event, stage: str) -> None:
        """Send an arm trajectory (one JointTrajectory, as to the UR driver) and stream the hand
        samples (as to the hand driver) while stepping the simulation; then check tracking."""
        from dex_sim.commands import CommandRejected, JointTrajectoryCommand, TrajectoryPoint

        env = self.env
        wall0 = time.monotonic()
        if arm_q is not None:
            names = list(env.arm_channel.names)
            qd = np.zeros_like(arm_q)
            if len(t) >= 3:
                qd[1:-1] = (arm_q[2:] - arm_q[:-2]) / (t[2:] - t[:-2])[:, None]
            pts = [TrajectoryPoint(arm_q[k] * env.arm_channel.scale + env.arm_channel.offset, float(t[k]), qd[k])
                   for k in range(len(t))]
            try:
                env.command_arm(JointTrajectoryCommand(names, pts))
            except CommandRejected as exc:
                raise StageFailed(f"{stage}: the arm driver rejected the trajectory: {exc.reason}") from exc
        # hand: a JointState driver (LEAP) gets targets streamed every control_dt; a trajectory
        # driver (Shadow) gets the segment as one trajectory (streaming 20 ms trajectories would ask
        # it to close every gap between its set-point and a blocked finger's target within 20 ms)
        streamed = env.hand_channel.kind == "joint_state"
        if not streamed and len(t) > 1:
            try:
                env.command_hand(env.hand_trajectory_from_joints(t, hand_q))
            except CommandRejected as exc:
                raise StageFailed(f"{stage}: the hand driver rejected the trajectory: {exc.reason}") from exc
        dt = self.cfg.control_dt
        n = int(np.ceil((t[-1] + self.cfg.settle_s) / dt))
        for k in range(n + 1):
            if cancel.is_set():
                env.cancel()
                return
            if streamed or len(t) == 1:
                tk = min(k * dt, t[-1])
                h = np.array([np.interp(tk, t, hand_q[:, j]) for j in range(hand_q.shape[1])])
                try:
                    env.command_hand(env.hand_command_from_joints(h, duration=dt))
                except CommandRejected as exc:
                    raise StageFailed(f"{stage}: the hand driver rejected a target: {exc.reason}") from exc
            env.step_time(dt)
            if time.monotonic() - wall0 > timeout:
                env.cancel()
                raise StageFailed(f"{stage}: motion did not finish within {timeout:.0f} s")
        if arm_q is not None:
            errs = np.abs(env.model_joint_positions()[0] - arm_q[-1])
            err = float(errs.max())
            if err > self.cfg.track_tol:
                worst = self.robot.cfg.arm.joints[int(np.argmax(errs))]
                raise StageFailed(f"{stage}: the arm ended {err:.3f} rad from its target ({worst}; blocked?)")

    def reach(self, plan: Planned, timeout: float, cancel: threading.Event) -> None:
        sel = plan.selection
        arm, hand = sel.arm, sel.hand
        t = np.union1d(arm.t, hand.t)
        arm_q = np.stack([np.interp(t, arm.t, arm.q[:, j]) for j in range(arm.q.shape[1])], 1)
        hand_q = np.stack([np.interp(t, hand.t, hand.q[:, j]) for j in range(hand.q.shape[1])], 1)
        self._run(t, arm_q, hand_q, timeout, cancel, "reach")

    def preshape(self, plan: Planned, timeout: float, cancel: threading.Event) -> None:
        # the planner's hand trajectory already shaped the hand before the arm moved: wait until it
        # is there (up to preshape_wait_s, as the orchestrator waits up to settle_s)
        from dex_bringup.orchestration import hand_shape_error

        waited = 0.0
        while True:
            _, hand_q = self.env.model_joint_positions()
            err, worst = hand_shape_error(self.env.robot.cfg.hand, hand_q, plan.target.pregrasp_q)
            if err <= self.cfg.preshape_tol:
                return
            if waited >= self.cfg.preshape_wait_s or cancel.is_set():
                raise StageFailed(f"preshape: the hand is {err:.2f} rad from its pre-grasp shape ({worst})")
            self.env.step_time(self.cfg.control_dt)
            waited += self.cfg.control_dt

    def _stage(self, name: str, plan: Planned, timeout: float, cancel: threading.Event, height: float = 0.0) -> None:
        from dex_policy.executor import ExecutionContext, ExecutionError

        ctx = ExecutionContext(plan.target, self.env.model_joint_positions, height)
        try:
            for seg in getattr(self.executor, name)(ctx):
                self._run(seg.t, seg.arm_q, seg.hand_q, timeout, cancel, name)
        except ExecutionError as exc:
            raise StageFailed(f"{name}: {exc}") from exc

    def approach(self, plan, timeout, cancel):
        self._stage("approach", plan, timeout, cancel)

    def squeeze(self, plan, timeout, cancel):
        self._stage("squeeze", plan, timeout, cancel)
        self.frames["grasp"] = self.env.render().rgb

    def lift(self, plan, height, timeout, cancel):
        self._stage("lift", plan, timeout, cancel, height)

    def release(self, plan, timeout, cancel):
        self._stage("release", plan, timeout, cancel)

    def verify(self, perceived: Perceived, plan: Planned, height: float, timeout: float,
               cancel: threading.Event) -> tuple[bool, str]:
        """Without ground truth, as on the real robot, on one frame taken after the lift: (1)
        perception no longer finds an object where the target stood (prompt ``point`` at its
        pre-grasp centroid), and (2) something that is neither the table nor the robot is seen where
        the object should be if it went up with the hand
        (:func:`dex_bringup.orchestration.held_object_points`) or (3) the fingers are held short of
        the squeeze target by something (:func:`dex_policy.executor.fingers_blocked`: an object
        hidden from the camera behind the hand). An object left behind fails (1); one dropped fails
        (2) and (3). :func:`dex_bringup.orchestration.verify_verdict` decides (the ROS
        orchestrator uses the same rule)."""
        from dex_bringup.orchestration import held_object_points, verify_verdict
        from dex_perception.errors import PerceptionError
        from dex_policy.executor import fingers_blocked

        c = perceived.centroid
        if self.cfg.verify_hold_s > 0:  # hold the lifted object a moment first: a slipping grasp shows
            self.env.step_time(self.cfg.verify_hold_s)
        frame = self.env.render()
        self.frames["lifted"] = frame.rgb
        arm_q, hand_q = self.env.model_joint_positions()
        try:
            # the workspace box raised by verify_extra_height: the lifted object is above the table scene's box
            analysis = self.perception.analyse(frame.depth, self.camera, frame.rgb,
                                               workspace=self.perception.config.workspace.raised(self.cfg.verify_extra_height))
        except PerceptionError:  # nothing above the table at all
            analysis = None
        still_there = False
        if analysis is not None:
            try:
                res = self.perception.select(analysis, f"point {c[0]:.4f} {c[1]:.4f} {c[2]:.4f}")
                still_there = res.num_objects > 0 and len(res.points) > 0
            except PerceptionError:  # no object near the point: the place is empty
                still_there = False
        moved = self.executor.arm.wrist_pose(arm_q)[:3, 3] - plan.target.squeeze_T[:3, 3]
        held = 0 if analysis is None else held_object_points(
            analysis.candidate_points, None, self.self_filter,
            arm_q, hand_q, c + moved, self.cfg.held_radius, self.cfg.held_margin)
        blocked, gap = fingers_blocked(hand_q, plan.target.grasp_q, plan.target.squeeze_q)
        self.log["verify"] = {"object_left_its_place": not still_there, "fingers_blocked": blocked, "finger_gap_rad": gap,
                              "held_points": held}
        # diagnostics for the benchmark (how each verify decision compares with the simulator's
        # truth at that moment); the decision below never reads it
        truth = object_truth(self.env)
        h0 = getattr(self, "heights0", {})
        self.log.setdefault("verify_attempts", []).append({
            **self.log["verify"], "attempt": self.attempt,
            "truth_lifted": any(o["height_m"] - h0.get(n, o["height_m"]) >= 0.5 * self.cfg.success_height
                                and o["touching_hand"] for n, o in truth.items())})
        ok, why = verify_verdict("ok" if still_there else "nothing_in_workspace", "", blocked, gap, held,
                                 self.cfg.min_held_points)
        self.log["verify_attempts"][-1]["verdict"] = bool(ok)
        return bool(ok), why

    def stop_motion(self) -> None:
        self.env.cancel()

    def proposal_of(self, plan: Planned | None):
        return None if plan is None else plan.proposal


# -------------------------------------------------------------------------------------- factories


def make_perception(env):
    from dex_perception.calibration import Extrinsics
    from dex_perception.config import default_config as perception_config
    from dex_perception.pipeline import Perception

    info = env.camera_info()
    return Perception(perception_config(), Extrinsics(info.world_T_optical, info.base_frame, info.frame_id))


def make_proposer(robot, cfg: SimEpisodeConfig):
    from dex_proposal.api import Proposer
    from dex_proposal.api import default_config as proposal_config

    pc = proposal_config()
    pc = replace(pc, synthesis=replace(pc.synthesis, n_candidates=cfg.n_candidates, table_z=0.0,
                                                         iter_scale=cfg.iter_scale, stage_iters=cfg.stage_iters,
                                                         squeeze_force={} if cfg.squeeze_force is None
                                                         else {"*": float(cfg.squeeze_force)}),
                 top_k=cfg.top_k, processes=cfg.processes)
    return Proposer(robot, pc)


def make_planner(robot):
    from dex_planning.planner import make_planner as mk

    return mk(robot)


# -------------------------------------------------------------------------------------- scoring


def hand_geoms(env) -> set[int]:
    """Geom ids of the hand (the subtree of the hand's root body)."""
    import mujoco

    m = env.model
    root = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, env.robot.cfg.hand.root_body)
    bodies = {root}
    for b in range(m.nbody):
        p = b
        while p > 0:
            if p == root:
                bodies.add(b)
                break
            p = int(m.body_parentid[p])
    return {g for g in range(m.ngeom) if int(m.geom_bodyid[g]) in bodies}


def evaluate_lift(env, cfg: SimEpisodeConfig) -> dict:
    """Ground truth, after the episode (evaluation only): hold ``hold_s`` with the last commands,
    then :func:`object_truth`."""
    env.step_time(cfg.hold_s)
    return object_truth(env)


def object_truth(env) -> dict:
    """Ground truth now (evaluation and diagnostics only, never a decision): per object its height
    (origin z, world) [m] and whether it touches the hand."""
    hand = hand_geoms(env)
    d = env.data
    out = {}
    geom_ids = env.object_geom_ids()
    for name, T in env.object_poses().items():
        ids = set(geom_ids[name])
        touching = any((int(c.geom1) in ids and int(c.geom2) in hand) or (int(c.geom2) in ids and int(c.geom1) in hand)
                       for c in d.contact[: d.ncon])
        out[name] = {"height_m": float(T[2, 3]), "touching_hand": bool(touching)}
    return out


def run_episode(env, seed: int, cfg: SimEpisodeConfig | None = None, goal: Goal | None = None,
                ports: SimPorts | None = None, feedback=None) -> tuple[EpisodeResult, SimPorts, dict]:
    """Reset nothing: run one episode on the current scene, then score it. Returns the episode
    result, the ports (logs, frames) and the score (``success``, per-object ground truth)."""
    cfg = cfg or default_config()
    ports = ports or SimPorts(env, cfg, seed)
    ports.seed = seed
    ports.attempt = 1
    ports.frames, ports.log = {}, {}
    heights0 = {n: float(T[2, 3]) for n, T in env.object_poses().items()}
    ports.heights0 = heights0
    result = GraspEpisode(ports, cfg.episode, feedback).run(goal or Goal())
    score = {"objects": evaluate_lift(env, cfg)}
    lifted = [n for n, o in score["objects"].items()
              if o["height_m"] - heights0[n] >= cfg.success_height and o["touching_hand"]]
    score["lifted"] = lifted
    score["success"] = bool(lifted)
    score["rise_m"] = {n: o["height_m"] - heights0[n] for n, o in score["objects"].items()}
    return result, ports, score
