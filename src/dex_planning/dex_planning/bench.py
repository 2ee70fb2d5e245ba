"""Planning benchmark: ``python -m dex_planning.bench`` (JSON + markdown table in ``out/bench/``).

Per robot combo:

* **reachable targets** (``--targets``, default 200): random tabletop scenes (a box, cylinder or
  sphere object at a random place on the table in the arm's workspace: 0.45-0.85 x the arm's
  reach from the base, within +-57 deg of +y; 0-2 obstacle boxes elsewhere on the table), a
  pre-grasp hand root pose derived from an approach direction (from above or from the side, random
  roll, palm 2-5 cm off the object surface) with the hand at its YAML pre-shape; kept only if the
  planner's IK finds a solution within the planning window whose goal state is collision-free
  (the object is given to the planner as a surface point cloud). Start: home (even targets) or a
  random collision-free state near home (odd targets), hand open.
* **unreachable / invalid targets** (``--unreachable``, default 50): too far away, palm under the
  table top, palm inside an obstacle box, NaN position, non-unit quaternion. Each must give a
  typed failure (never a trajectory).
* Every returned trajectory is re-checked independently in MuJoCo (:mod:`dex_planning.verify`:
  the compiled robot model with all hand geoms, the true primitives, the hand's actual trajectory,
  ``mj_collision``, finite-difference limit ratios).

Reported: success rate on reachable targets, p50/p95 planning time (the whole
:meth:`~dex_planning.planner.ArmPlanner.select` call: scene set-up with the cloud octree, IK,
search, TOPP-RA, the planner's own dense re-check), path length, the MuJoCo re-check's colliding
trajectories, max ``|qd|/vlim`` and ``|qdd|/alim``, and the failure reasons. Targets: CPU p50
<= 100 ms, success >= 98 %, 0 collisions. Timings depend on machine load; the JSON records the
load average.

``--image`` renders a few planned paths to ``docs/images/planning_<combo>.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dex_description.compose import Robot, load_robot
from dex_planning.config import default_config, override
from dex_planning.cpu import CpuPlanner
from dex_planning.errors import InvalidInputError
from dex_planning.interface import (
    REASON_COLLISION_AT_GOAL,
    REASON_INVALID,
    REASON_NO_IK,
    ProposalTarget,
)
from dex_planning.planner import make_target
from dex_planning.scene import Box, PlanningScene, table_box
from dex_planning.verify import MujocoChecker, Primitive

COMBOS = ("ur5e_leap", "ur10e_shadow")
TABLE = dict(center_xy=(0.0, 0.45), size_xy=(1.2, 1.4), top_z=0.0, thickness=0.05)  # dex_sim's default table


# ----------------------------------------------------------------------------- scenes and targets


@dataclass
class Scenario:
    """One benchmark query.

    Attributes:
        kind: ``reachable`` or the unreachable category (``far``, ``under_table``, ``in_obstacle``,
            ``nan``, ``bad_quat``).
        object: The object primitive (MuJoCo) — the planner sees its surface cloud.
        obstacles: Obstacle boxes (planner) — also MuJoCo primitives.
        cloud: (N, 3) object surface points [m].
        world_T_root: (4, 4) pre-grasp hand root pose (may contain NaN for ``nan``).
        quat: The wxyz quaternion given to ``make_target`` (``bad_quat`` scales it).
        hand_q: Pre-grasp hand joints.
        start_q: Arm start state.
        expected: Failure reasons accepted for an unreachable scenario (empty for reachable).
    """

    kind: str
    object: Primitive
    obstacles: list[Box]
    cloud: np.ndarray
    world_T_root: np.ndarray
    quat: np.ndarray
    hand_q: np.ndarray
    start_q: np.ndarray
    expected: tuple[str, ...] = ()

    def primitives(self) -> list[Primitive]:
        t = table_box(**TABLE)
        out = [Primitive("table", "box", tuple(t.size / 2), t.world_T_box), self.object]
        out += [Primitive(b.name, "box", tuple(b.size / 2), b.world_T_box) for b in self.obstacles]
        return out

    def planning_scene(self, resolution: float) -> PlanningScene:
        return PlanningScene((table_box(**TABLE),) + tuple(self.obstacles), self.cloud, resolution)


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _sample_object(rng: np.random.Generator, xy: np.ndarray) -> tuple[Primitive, np.ndarray]:
    """A random primitive resting on the table at ``xy`` and its surface cloud (N, 3)."""
    kind = rng.choice(["box", "cylinder", "sphere"])
    T = np.eye(4)
    if kind == "box":
        half = rng.uniform([0.02, 0.02, 0.03], [0.05, 0.05, 0.09])
        T[:3, :3] = _rot_z(rng.uniform(0, np.pi))
        T[:3, 3] = [xy[0], xy[1], half[2]]
        size = tuple(half)
        # surface samples: per face, proportional to area
        pts = []
        for axis in range(3):
            others = [a for a in range(3) if a != axis]
            area = 4 * half[others[0]] * half[others[1]]
            n = max(40, int(area / 0.003**2))
            for sign in (-1, 1):
                p = rng.uniform(-half, half, (n, 3))
                p[:, axis] = sign * half[axis]
                pts.append(p)
        local = np.concatenate(pts)
    elif kind == "cylinder":
        r, h = rng.uniform(0.025, 0.05), rng.uniform(0.04, 0.1)
        T[:3, 3] = [xy[0], xy[1], h]
        size = (r, h)
        n_side = max(200, int(2 * np.pi * r * 2 * h / 0.003**2))
        a = rng.uniform(0, 2 * np.pi, n_side)
        side = np.c_[r * np.cos(a), r * np.sin(a), rng.uniform(-h, h, n_side)]
        n_cap = max(60, int(np.pi * r * r / 0.003**2))
        rr, aa = r * np.sqrt(rng.uniform(0, 1, n_cap)), rng.uniform(0, 2 * np.pi, n_cap)
        caps = [np.c_[rr * np.cos(aa), rr * np.sin(aa), np.full(n_cap, z)] for z in (-h, h)]
        local = np.concatenate([side] + caps)
    else:
        r = rng.uniform(0.03, 0.06)
        T[:3, 3] = [xy[0], xy[1], r]
        size = (r,)
        n = max(300, int(4 * np.pi * r * r / 0.003**2))
        v = rng.normal(size=(n, 3))
        local = r * v / np.linalg.norm(v, axis=1, keepdims=True)
    cloud = local @ T[:3, :3].T + T[:3, 3]
    return Primitive("object", str(kind), size, T), cloud


def _support(obj: Primitive, direction: np.ndarray) -> float:
    """Distance from the object's centre to its surface along ``direction`` (support function)."""
    R = obj.world_T_geom[:3, :3]
    d = R.T @ direction
    s = np.asarray(obj.size)
    if obj.kind == "box":
        return float(np.abs(d) @ s)
    if obj.kind == "cylinder":
        return float(s[0] * np.linalg.norm(d[:2]) + s[1] * abs(d[2]))
    return float(s[0])


def _hand_pose(robot: Robot, palm_point: np.ndarray, normal: np.ndarray, fingers: np.ndarray) -> np.ndarray:
    """``world_T_root`` putting the palm centre at ``palm_point`` with the palm normal along
    ``normal`` and the fingers along ``fingers`` (orthogonalised)."""
    palm = robot.cfg.hand.palm
    n_w = normal / np.linalg.norm(normal)
    f_w = fingers - (fingers @ n_w) * n_w
    f_w /= np.linalg.norm(f_w)
    n_r, f_r = palm.normal, palm.finger_direction - (palm.finger_direction @ palm.normal) * palm.normal
    f_r = f_r / np.linalg.norm(f_r)
    W = np.stack([n_w, f_w, np.cross(n_w, f_w)], 1)
    Rr = np.stack([n_r, f_r, np.cross(n_r, f_r)], 1)
    R = W @ Rr.T
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = palm_point - R @ palm.center
    return T


def _quat(R: np.ndarray) -> np.ndarray:
    import mujoco

    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R).reshape(9))
    return q


def _reach(robot: Robot) -> float:
    return {"ur5e": 0.85, "ur10e": 1.3}.get(robot.cfg.arm.name, 1.0)


def _random_scene(rng, robot: Robot):
    reach = _reach(robot)
    r = rng.uniform(0.45 * reach, 0.85 * reach)
    az = np.pi / 2 + rng.uniform(-1.0, 1.0)
    xy = np.array([r * np.cos(az), r * np.sin(az)])
    obj, cloud = _sample_object(rng, xy)
    obstacles = []
    for k in range(int(rng.integers(0, 3))):
        for _ in range(20):
            c = np.array([rng.uniform(-0.5, 0.5), rng.uniform(0.1, min(1.05, reach)), 0.0])
            half = rng.uniform([0.03, 0.03, 0.05], [0.08, 0.08, 0.18])
            if np.linalg.norm(c[:2] - xy) > 0.22 + half[:2].max() and np.linalg.norm(c[:2]) > 0.3:
                c[2] = half[2]
                obstacles.append(Box.axis_aligned(f"obstacle{k}", c, 2 * half))
                break
    return obj, cloud, obstacles


def _approach(rng, robot: Robot, obj: Primitive) -> np.ndarray:
    """A pre-grasp ``world_T_root`` for ``obj``: from above or from the side, random roll."""
    centre = obj.world_T_geom[:3, 3]
    if rng.uniform() < 0.5:  # from above, tilted up to 20 deg
        tilt, az = rng.uniform(0, np.radians(20)), rng.uniform(0, 2 * np.pi)
        normal = np.array([np.sin(tilt) * np.cos(az), np.sin(tilt) * np.sin(az), -np.cos(tilt)])
    else:  # from the side: roughly from the robot's side, tilted down 0-35 deg
        base_dir = np.arctan2(centre[1], centre[0])
        az = base_dir + rng.uniform(-1.2, 1.2)
        el = rng.uniform(0, np.radians(35))
        normal = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), -np.sin(el)])
    standoff = rng.uniform(0.02, 0.05)
    palm_point = centre - normal * (_support(obj, -normal) + standoff)
    helper = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    f0 = np.cross(normal, helper)
    f0 /= np.linalg.norm(f0)
    roll = rng.uniform(0, 2 * np.pi)
    fingers = np.cos(roll) * f0 + np.sin(roll) * np.cross(normal, f0)
    return _hand_pose(robot, palm_point, normal, fingers)


def _start_state(rng, planner: CpuPlanner, index: int) -> np.ndarray:
    home = planner.home.copy()
    if index % 2 == 0:
        return home
    planner.collision.set_hand(planner.robot.cfg.hand.named_poses["open"])
    for _ in range(50):
        q = home + rng.uniform(-0.6, 0.6, 6)
        q = np.clip(q, planner.arm_lower, planner.arm_upper)
        if not planner.collision.in_collision(q, "plan"):
            return q
    return home


def reachable_scenario(rng, planner: CpuPlanner, index: int, max_tries: int = 200) -> tuple[Scenario, int]:
    """A random reachable scenario (IK within the planning window, goal collision-free) and the
    number of candidates drawn."""
    robot = planner.robot
    pre = np.asarray(robot.cfg.hand.named_poses["pre_shape"], dtype=np.float64)
    start = _start_state(rng, planner, index)
    for tries in range(1, max_tries + 1):
        if tries % 25 == 0:  # a start state that rarely fits (e.g. the hand low over the table): draw another
            start = _start_state(rng, planner, index)
        obj, cloud, obstacles = _random_scene(rng, robot)
        T = _approach(rng, robot, obj)
        sc = Scenario("reachable", obj, obstacles, cloud, T, _quat(T[:3, :3]), pre, start)
        if _goal_ok(planner, sc):
            return sc, tries
    raise RuntimeError(f"no reachable scenario in {max_tries} tries")


def _goal_ok(planner: CpuPlanner, sc: Scenario) -> bool:
    planner.set_scene(sc.planning_scene(planner.cfg.collision.cloud_resolution))
    cm = planner.collision
    open_q = np.asarray(planner.robot.cfg.hand.named_poses["open"], dtype=np.float64)
    if planner.start_collisions(sc.start_q, open_q) or planner.preshape_collisions(sc.start_q, open_q, sc.hand_q):
        return False
    lo, hi = planner.bounds(sc.start_q)
    flange = sc.world_T_root @ np.linalg.inv(planner.flange_T_root)
    sols = planner.ik.solve(flange, lo, hi, sc.start_q)
    return any(not cm.in_collision(q, "endpoint") for q in sols)


def unreachable_scenarios(rng, planner: CpuPlanner, n: int) -> list[Scenario]:
    """``n`` scenarios that must fail, cycling through the categories."""
    robot = planner.robot
    pre = np.asarray(robot.cfg.hand.named_poses["pre_shape"], dtype=np.float64)
    home = planner.home.copy()
    out = []
    kinds = ["far", "under_table", "in_obstacle", "nan", "bad_quat"]
    while len(out) < n:
        kind = kinds[len(out) % len(kinds)]
        obj, cloud, obstacles = _random_scene(rng, robot)
        T = _approach(rng, robot, obj)
        quat = _quat(T[:3, :3])
        expected: tuple[str, ...]
        if kind == "far":
            d = rng.uniform(1.6, 2.5) * _reach(robot)
            az = rng.uniform(0, 2 * np.pi)
            T[:3, 3] = [d * np.cos(az), d * np.sin(az), rng.uniform(0.1, 0.8)]
            expected = (REASON_NO_IK,)
        elif kind == "under_table":
            T = _hand_pose(robot, np.array([obj.world_T_geom[0, 3], obj.world_T_geom[1, 3], -0.12]),
                           np.array([0, 0, -1.0]), np.array([1.0, 0, 0]))
            quat = _quat(T[:3, :3])
            expected = (REASON_COLLISION_AT_GOAL, REASON_NO_IK)
        elif kind == "in_obstacle":
            c = np.array([obj.world_T_geom[0, 3], obj.world_T_geom[1, 3] + 0.0, 0.15])
            box = Box.axis_aligned("wall", c, (0.3, 0.3, 0.3))
            obstacles = [box]
            T = _hand_pose(robot, c, np.array([0, 0, -1.0]), np.array([1.0, 0, 0]))
            quat = _quat(T[:3, :3])
            expected = (REASON_COLLISION_AT_GOAL, REASON_NO_IK)
        elif kind == "nan":
            T[0, 3] = np.nan
            expected = (REASON_INVALID,)
        else:
            quat = quat * 2.0
            expected = (REASON_INVALID,)
        sc = Scenario(kind, obj, obstacles, cloud, T, quat, pre, home, expected)
        planner.set_scene(sc.planning_scene(planner.cfg.collision.cloud_resolution))
        open_q = np.asarray(robot.cfg.hand.named_poses["open"], dtype=np.float64)
        if planner.start_collisions(home, open_q) or planner.preshape_collisions(home, open_q, pre):
            continue  # the scene would make the START invalid (another typed failure): draw again
        out.append(sc)
    return out


# ----------------------------------------------------------------------------- running


def _target(planner: CpuPlanner, sc: Scenario, index: int) -> ProposalTarget | Exception:
    try:
        return make_target(planner.robot, f"bench-{index}", sc.world_T_root[:3, 3], sc.quat,
                           planner.hand_joints, sc.hand_q)
    except InvalidInputError as exc:
        return exc


def _pct(x: Sequence[float], q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def run_combo(name: str, n_targets: int, n_unreachable: int, seed: int, overrides: dict, log,
              image: Path | None = None) -> dict:
    robot = load_robot(name)
    cfg = override(default_config(), overrides)
    t0 = time.monotonic()
    planner = CpuPlanner(robot, cfg)
    checker = MujocoChecker(robot)
    log(f"[{name}] planner + MuJoCo checker ready in {time.monotonic() - t0:.1f} s")
    rng = np.random.default_rng(seed)
    open_q = np.asarray(robot.cfg.hand.named_poses["open"], dtype=np.float64)
    rows, drawn, shown = [], 0, []
    for i in range(n_targets):
        sc, tries = reachable_scenario(rng, planner, i)
        drawn += tries
        res = planner.select(sc.start_q, open_q, [_target(planner, sc, i)], sc.planning_scene(cfg.collision.cloud_resolution))
        row = {"index": i, "kind": sc.kind, "object": sc.object.kind, "obstacles": len(sc.obstacles),
               "start": "home" if i % 2 == 0 else "random", "success": res.success, "status": res.status,
               "time_s": res.planning_time,
               "reason": res.rejections[0].reason if res.rejections else "",
               "message": res.rejections[0].message if res.rejections else ""}
        if res.success:
            st = res.attempt.stats
            checker.set_scene(sc.primitives())
            chk = checker.check(res.arm, res.hand)
            row.update({"ik_s": st.ik_s, "search_s": st.search_s, "timing_s": st.timing_s, "check_s": st.check_s,
                        "direct": st.direct, "via": st.via, "waypoints": st.n_waypoints, "smooth": st.smooth,
                        "path_length": st.path_length, "duration_s": res.arm.duration,
                        "vel_ratio": st.max_vel_ratio, "acc_ratio": st.max_acc_ratio,
                        "mj_states": chk.n_states, "mj_colliding": chk.n_colliding,
                        "mj_penetration": chk.max_penetration, "mj_pairs": chk.pairs,
                        "mj_vel_ratio": chk.max_vel_ratio, "mj_acc_ratio": chk.max_acc_ratio,
                        "mj_hand_vel_ratio": chk.hand_max_vel_ratio})
            if len(shown) < 4 and (len(shown) < 2 or not st.direct) and sc.obstacles:
                shown.append((sc, res))
        rows.append(row)
        if (i + 1) % 20 == 0 or i + 1 == n_targets:
            ok = [r for r in rows if r["success"]]
            log(f"[{name}] reachable {i + 1}/{n_targets}: success {len(ok)}/{len(rows)}, "
                f"p50 {1e3 * _pct([r['time_s'] for r in rows], 50):.0f} ms, "
                f"MuJoCo collisions {sum(r['mj_colliding'] > 0 for r in ok)}")
    bad_rows = []
    for j, sc in enumerate(unreachable_scenarios(rng, planner, n_unreachable)):
        res = planner.select(sc.start_q, open_q, [_target(planner, sc, j)], sc.planning_scene(cfg.collision.cloud_resolution))
        reason = res.rejections[0].reason if res.rejections else ""
        bad_rows.append({"index": j, "kind": sc.kind, "success": res.success, "status": res.status,
                         "reason": reason, "expected": list(sc.expected),
                         "typed_ok": (not res.success) and res.arm is None and reason in sc.expected,
                         "time_s": res.planning_time,
                         "message": res.rejections[0].message if res.rejections else res.message})
    log(f"[{name}] unreachable: {sum(r['typed_ok'] for r in bad_rows)}/{len(bad_rows)} typed failures as expected")
    summary = summarize(name, rows, bad_rows, drawn)
    summary["config_overrides"] = overrides
    if image is not None and shown:
        render_paths(robot, checker, shown, image)
        summary["image"] = str(image)
        log(f"[{name}] picture: {image}")
    return {"summary": summary, "reachable": rows, "unreachable": bad_rows}


def summarize(name: str, rows: list[dict], bad_rows: list[dict], drawn: int) -> dict:
    ok = [r for r in rows if r["success"]]
    times = [r["time_s"] for r in rows]
    fails: dict[str, int] = {}
    for r in rows:
        if not r["success"]:
            fails[r["reason"] or r["status"]] = fails.get(r["reason"] or r["status"], 0) + 1
    reasons: dict[str, int] = {}
    for r in bad_rows:
        key = f"{r['kind']}:{r['reason'] or r['status']}"
        reasons[key] = reasons.get(key, 0) + 1

    def mx(key):
        return float(max((r[key] for r in ok), default=float("nan")))

    return {
        "combo": name,
        "reachable_targets": len(rows),
        "candidates_drawn": drawn,
        "success": len(ok),
        "success_rate": len(ok) / max(1, len(rows)),
        "time_p50_ms": 1e3 * _pct(times, 50),
        "time_p95_ms": 1e3 * _pct(times, 95),
        "time_max_ms": 1e3 * (max(times) if times else float("nan")),
        "time_p50_success_ms": 1e3 * _pct([r["time_s"] for r in ok], 50),
        "stage_mean_ms": {k: 1e3 * float(np.mean([r[k] for r in ok])) if ok else float("nan")
                          for k in ("ik_s", "search_s", "timing_s", "check_s")},
        "direct_fraction": float(np.mean([r["direct"] for r in ok])) if ok else float("nan"),
        "via_fraction": float(np.mean([r["via"] for r in ok])) if ok else float("nan"),
        "smooth_fraction": float(np.mean([r["smooth"] for r in ok])) if ok else float("nan"),
        "path_length_p50_rad": _pct([r["path_length"] for r in ok], 50),
        "path_length_p95_rad": _pct([r["path_length"] for r in ok], 95),
        "duration_p50_s": _pct([r["duration_s"] for r in ok], 50),
        "mujoco_colliding_trajectories": sum(r["mj_colliding"] > 0 for r in ok),
        "mujoco_states_checked": int(sum(r["mj_states"] for r in ok)),
        "mujoco_max_penetration_m": mx("mj_penetration") if ok else float("nan"),
        "max_vel_ratio": mx("vel_ratio"),
        "max_acc_ratio": mx("acc_ratio"),
        "max_vel_ratio_fd": mx("mj_vel_ratio"),
        "max_acc_ratio_fd": mx("mj_acc_ratio"),
        "max_hand_vel_ratio_fd": mx("mj_hand_vel_ratio"),
        "failures": fails,
        "unreachable_targets": len(bad_rows),
        "unreachable_typed_ok": sum(r["typed_ok"] for r in bad_rows),
        "unreachable_returned_trajectory": sum(r["success"] for r in bad_rows),
        "unreachable_reasons": reasons,
        "unreachable_time_p50_ms": 1e3 * _pct([r["time_s"] for r in bad_rows], 50),
    }


def markdown(summaries: list[dict], meta: dict) -> str:
    lines = [
        "# Planning benchmark (CPU backend)",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, load average at start {meta['loadavg']}.",
        "Targets: p50 <= 100 ms, success >= 98 % on reachable targets, 0 collisions (independent MuJoCo re-check), "
        "limit ratios <= 1.",
        "",
        "| combo | reachable | success | p50 [ms] | p95 [ms] | path p50 [rad] | MuJoCo colliding | max qd/lim | max qdd/lim "
        "| max qd/lim (FD) | max qdd/lim (FD) | unreachable typed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['combo']} | {s['reachable_targets']} | {100 * s['success_rate']:.1f} % | {s['time_p50_ms']:.0f} "
            f"| {s['time_p95_ms']:.0f} | {s['path_length_p50_rad']:.2f} | {s['mujoco_colliding_trajectories']} "
            f"({s['mujoco_states_checked']} states) | {s['max_vel_ratio']:.3f} | {s['max_acc_ratio']:.3f} "
            f"| {s['max_vel_ratio_fd']:.3f} | {s['max_acc_ratio_fd']:.3f} "
            f"| {s['unreachable_typed_ok']}/{s['unreachable_targets']} |")
    lines += ["", "Per-stage mean times of successful plans [ms] and other facts:", ""]
    for s in summaries:
        st = s["stage_mean_ms"]
        lines.append(f"* {s['combo']}: IK {st['ik_s']:.1f}, search {st['search_s']:.1f}, TOPP-RA {st['timing_s']:.1f}, "
                     f"dense re-check {st['check_s']:.1f}; straight line sufficed for {100 * s['direct_fraction']:.0f} %, "
                     f"lifted via states for {100 * s['via_fraction']:.0f} %, OMPL for the rest; "
                     f"TOPP-RA on a smooth spline for {100 * s['smooth_fraction']:.0f} % of plans (the rest: exact "
                     f"trapezoids per straight segment); "
                     f"p95 path {s['path_length_p95_rad']:.2f} rad, p50 duration {s['duration_p50_s']:.2f} s; "
                     f"failures {s['failures'] or 'none'}; unreachable reasons {s['unreachable_reasons']}; "
                     f"{s['candidates_drawn']} candidate targets drawn for {s['reachable_targets']} reachable ones.")
    return "\n".join(lines) + "\n"


def render_paths(robot: Robot, checker: MujocoChecker, shown: list, path: Path, size=(560, 420)) -> None:
    """A 2 x 2 grid of pictures: the robot at the pre-grasp, the object (orange), obstacles (grey-blue)
    and the hand root's path (dots from red at the start to blue at the pre-grasp), with a caption."""
    import mujoco
    from PIL import Image, ImageDraw

    tiles = []
    root = robot.cfg.hand.root_body
    for sc, res in shown:
        checker.set_scene(sc.primitives())
        m, d = checker.model, checker.data
        t, qa, qh = checker.states(res.arm, res.hand)
        pts = []
        for k in np.linspace(0, len(t) - 1, 40).astype(int):
            d.qpos[:] = m.qpos0
            d.qpos[checker._arm_adr] = qa[k]
            d.qpos[checker._hand_adr] = qh[k]
            mujoco.mj_kinematics(m, d)
            pts.append(d.xpos[m.body(root).id].copy())
        markers = [(p, 0.012, (1.0 - a, 0.15, a, 1.0)) for p, a in zip(pts, np.linspace(0, 1, len(pts)))]
        checker.set_scene(sc.primitives(), markers)
        m, d = checker.model, checker.data
        m.vis.global_.offwidth, m.vis.global_.offheight = max(size[0], 640), max(size[1], 480)
        m.vis.headlight.ambient[:] = [0.35, 0.35, 0.35]
        d.qpos[:] = m.qpos0
        d.qpos[checker._arm_adr] = qa[-1]
        d.qpos[checker._hand_adr] = qh[-1]
        mujoco.mj_forward(m, d)
        cam = mujoco.MjvCamera()
        cam.lookat[:] = 0.5 * (np.mean(pts, axis=0) + np.array([0.0, 0.3, 0.2]))
        cam.distance = 1.5 if robot.cfg.arm.name == "ur5e" else 2.1
        cam.azimuth, cam.elevation = 135.0, -25.0
        with mujoco.Renderer(m, size[1], size[0]) as renderer:
            renderer.update_scene(d, cam)
            img = Image.fromarray(renderer.render())
        st = res.attempt.stats
        how = "straight line" if st.direct else ("via lifted states" if st.via else "OMPL RRTConnect")
        ImageDraw.Draw(img).text((8, 8), f"{sc.object.kind}, {len(sc.obstacles)} obstacle(s): {how}, "
                                 f"{1e3 * res.planning_time:.0f} ms, {res.arm.duration:.1f} s motion", fill=(255, 255, 255))
        tiles.append(np.asarray(img))
    cols = 2
    rows = (len(tiles) + cols - 1) // cols
    canvas = np.full((rows * size[1], cols * size[0], 3), 255, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        canvas[r * size[1]:(r + 1) * size[1], c * size[0]:(c + 1) * size[0]] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


def _parse_overrides(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dex_planning.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--robots", nargs="+", default=list(COMBOS), help="robot combos")
    parser.add_argument("--targets", type=int, default=200, help="reachable targets per combo")
    parser.add_argument("--unreachable", type=int, default=50, help="unreachable/invalid targets per combo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/bench", help="output directory (JSON + markdown)")
    parser.add_argument("--image", action="store_true", help="render docs/images/planning_<combo>.png")
    parser.add_argument("--image-dir", default="docs/images")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="planner config overrides, e.g. collision.env_margin=0.02 search.planner=AORRTC")
    ns = parser.parse_args(argv)
    overrides = _parse_overrides(ns.set)

    def log(msg: str) -> None:
        print(msg, flush=True)

    meta = {"command": "python -m dex_planning.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    results = {}
    for name in ns.robots:
        image = Path(ns.image_dir) / f"planning_{name}.png" if ns.image else None
        results[name] = run_combo(name, ns.targets, ns.unreachable, ns.seed, overrides, log, image)
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [results[n]["summary"] for n in ns.robots]
    (out / "planning.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=_json_default))
    (out / "planning.md").write_text(markdown(summaries, meta))
    print(markdown(summaries, meta))
    return 0


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(type(x))


if __name__ == "__main__":
    sys.exit(main())
