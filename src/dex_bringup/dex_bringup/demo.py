"""``dexgrasp demo``: the headless end-to-end demo in simulation.

For each robot combo (UR5e + LEAP, UR10e + Shadow) a few episodes on held-out objects: the
simulated depth camera -> perception -> grasp synthesis -> collision-free planning -> open-loop
approach, squeeze and lift -> the stack's own check that the object left the table and is in the
hand. Prints each episode's outcome and timing and writes ``<out>/report.md`` with a table and,
per episode, the scene, the executed grasp and the lifted object.

It is the in-process form of the node graph (``dexgrasp launch sim`` + the ExecuteGrasp action):
the same algorithms and the same episode state machine, without ROS, so that it needs nothing
but the venv. Scores come from the simulator's ground truth, after each episode.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexgrasp demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", nargs="+", default=["ur5e_leap", "ur10e_shadow"])
    parser.add_argument("--episodes", type=int, default=3, help="episodes per combo")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--objects", default="builtin/test")
    parser.add_argument("--out", default="out/demo")
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dex_bringup.e2e_bench import markdown, run_combo, summarise
    from dex_bringup.sim_episode import default_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = default_config()
    t0 = time.perf_counter()
    rows, summaries = [], []
    for robot in args.robots:
        r = run_combo(robot, args.episodes, args.seed, args.objects, 1, out, args.episodes, cfg)
        rows += r
        summaries.append(summarise(robot, r))
    meta = {"command": "dexgrasp demo " + " ".join(argv or []), "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{os.cpu_count()} CPUs", "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "object_set": args.objects, "num_objects": 1, "n_candidates": cfg.n_candidates, "executor": "open_loop",
            "attempts": cfg.episode.max_attempts, "iter_scale": cfg.iter_scale}
    text = markdown(summaries, meta, rows).replace("# End-to-end benchmark", "# dexgrasp demo", 1)
    report = out / "report.md"
    report.write_text(text)
    (out / "summary.json").write_text(json.dumps({"meta": meta, "summaries": summaries}, indent=1))
    total = sum(s["success"] for s in summaries)
    n = sum(s["episodes"] for s in summaries)
    print("\n".join(f"{s['robot']}: {s['success']}/{s['episodes']} lifted ({s['first_attempt_success']} at the first attempt)"
                    for s in summaries))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s: {total}/{n} episodes lifted their object; report: {report}")
    return 0
