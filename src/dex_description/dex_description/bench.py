"""``dexgrasp-description bench-fk``: batched FK (and FK + backward) throughput, JSON + a table.

Example::

    dexgrasp-description bench-fk --out out/bench/fk.json            # CPU, both robots
    dexgrasp-description bench-fk --device cuda --batch 1024 16384    # on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from dex_description.compose import load_robot
from dex_description.kinematics import HandKinematics


def _time(fn, device: torch.device, repeats: int) -> float:
    """Median wall time [s] of ``fn`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def run(robots, device: str, dtypes, batches, repeats: int, log=print) -> list[dict]:
    rows = []
    dev = torch.device(device)
    for name in robots:
        robot = load_robot(name, check=False)
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            hand = HandKinematics(robot, device=dev, dtype=dtype)
            for batch in batches:
                gen = torch.Generator(device="cpu").manual_seed(0)
                q = (hand.lower.cpu() + (hand.upper - hand.lower).cpu() * torch.rand(batch, hand.n_joints, generator=gen, dtype=dtype)).to(dev)
                pose = torch.eye(4, dtype=dtype, device=dev).expand(batch, 4, 4).clone()

                def fwd():
                    with torch.no_grad():
                        hand.forward(q, pose)

                qg = q.clone().requires_grad_(True)

                def fwd_bwd():
                    out = hand.forward(qg, pose)
                    (out.contact_points.sum() + out.sphere_centers.sum()).backward()

                t_f = _time(fwd, dev, repeats)
                t_fb = _time(fwd_bwd, dev, repeats)
                row = {
                    "robot": name, "hand": robot.cfg.hand.name, "device": str(dev), "dtype": dtype_name, "batch": batch,
                    "fk_ms": 1e3 * t_f, "fk_backward_ms": 1e3 * t_fb,
                    "fk_per_s": batch / t_f, "fk_backward_per_s": batch / t_fb,
                    "links": len(hand.tree.body_names), "spheres": int(hand.spheres.local.shape[0]),
                }
                rows.append(row)
                log(f"  {name:14s} {dtype_name:8s} B={batch:6d}  fk {row['fk_ms']:8.3f} ms  fk+bwd {row['fk_backward_ms']:8.3f} ms")
    return rows


def table(rows) -> str:
    head = "| hand | device | dtype | batch | FK [ms] | FK/s | FK+backward [ms] | FK+backward/s |\n|---|---|---|---:|---:|---:|---:|---:|\n"
    return head + "".join(
        f"| {r['hand']} | {r['device']} | {r['dtype']} | {r['batch']} | {r['fk_ms']:.3f} | {r['fk_per_s']:.3g} | "
        f"{r['fk_backward_ms']:.3f} | {r['fk_backward_per_s']:.3g} |\n"
        for r in rows
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dexgrasp-description bench-fk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", nargs="+", default=["ur10e_shadow", "ur5e_leap"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 64, 1024, 8192])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default="out/bench/fk.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"FK benchmark on {args.device} ({torch.get_num_threads()} CPU threads, torch {torch.__version__})")
    rows = run(args.robots, args.device, args.dtype, args.batch, args.repeats)
    meta = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "processor": platform.processor(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = table(rows)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
