"""Grasp-proposal benchmark: BODex's floating-hand protocol in MuJoCo, per hand and input.

For each robot, each object of the set (``--objects``: ``builtin/test`` by default = held-out
objects, or a directory with an ``objects.yaml``) and each of ``--placements`` settled poses on the
table (``dex_sim.env.SimEnv``, seeded), two inputs are built in the robot base frame:

* ``complete``: points sampled uniformly on the object's mesh, face normals, synthesised without a
  table (BODex's floating setting; ``--table-for-complete`` adds it);
* ``partial``: the object's pixels of one depth image from the scene camera (ground-truth
  segmentation), back-projected; normals by PCA of 16 neighbours, oriented to the camera (what
  the robot sees), synthesised with the table plane (no approach from below).

:class:`dex_proposal.api.Proposer` returns the top ``--grasps`` proposals; each is tested with
:class:`dex_proposal.sim_eval.FloatingHandEvaluator` (object at the same pose, no table, the
object's mass and friction from its ``objects.yaml``, weight-equivalent force along the six axis
directions). Metrics per hand and input: SSR [%], penetration depth PD [mm], self-penetration SPD
[mm], contact distance consistency CDC [mm], diversity (PCA first-variance ratio FVR [%] of the
object-frame grasp poses ``[axis-angle(3), translation(3), joints]`` and mean joint std [rad]),
speed (returned proposals and optimised candidates per second of synthesis wall time), and the
share of objects with no proposal (and why). Writes ``results.json``, ``results.md`` and sample
images to ``--out`` (default ``out/bench/proposal``); ``--images-to`` also copies the sample
images (e.g. to ``docs/images``).

Run ``python -m dex_proposal.bench --help``. The default run is the full protocol (both hands,
13 test objects x 2 placements, 20 grasps, both inputs); ``--quick`` is a small smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def _log(msg: str) -> None:
    print(msg, flush=True)


def partial_cloud(env, instance: str, rng: np.random.Generator, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The object's points (N, 3) [m] and camera-facing normals from one rendered depth image."""
    from scipy.spatial import cKDTree

    rgbd = env.render()
    seg = env.render_segmentation()
    label = [i for i, name in seg.labels.items() if name == instance][0]
    info = env.camera_info()
    mask = (seg.ids == label) & np.isfinite(rgbd.depth)
    v, u = np.nonzero(mask)
    z = rgbd.depth[v, u].astype(np.float64)
    K = info.K
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    cam = np.stack([x, y, z], 1)
    T = info.world_T_optical
    pts = cam @ T[:3, :3].T + T[:3, 3]
    if len(pts) < k + 1:
        return pts, np.zeros_like(pts)
    _, idx = cKDTree(pts).query(pts, k=k)
    nb = pts[idx] - pts[idx].mean(1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    _, vecs = np.linalg.eigh(cov)
    nrm = vecs[:, :, 0]
    to_cam = T[:3, 3] - pts
    nrm *= np.where((nrm * to_cam).sum(1) < 0, -1.0, 1.0)[:, None]
    return pts, nrm


def complete_cloud(vertices: np.ndarray, faces: np.ndarray, world_T_object: np.ndarray, n: int, seed: int):
    """Points (n, 3) [m] uniform on the mesh surface and face normals, world frame."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    pts, fi = trimesh.sample.sample_surface(mesh, n, seed=seed)
    nrm = mesh.face_normals[fi]
    R, t = world_T_object[:3, :3], world_T_object[:3, 3]
    return pts @ R.T + t, nrm @ R.T


def _hull_faces(v: np.ndarray) -> np.ndarray:
    from scipy.spatial import ConvexHull

    return ConvexHull(v).simplices


def diversity(poses: list[tuple[np.ndarray, np.ndarray]], world_T_object: np.ndarray) -> tuple[float, float]:
    """(FVR [%], mean joint std [rad]) of grasps ``(world_T_root, joints)`` in the object frame."""
    import torch

    if len(poses) < 3:
        return float("nan"), float("nan")
    from dex_description.rotations import matrix_to_quat

    inv = np.linalg.inv(world_T_object)
    rows = []
    for T, q in poses:
        o = inv @ T
        quat = matrix_to_quat(torch.as_tensor(o[:3, :3])).numpy()
        angle = 2 * math.atan2(np.linalg.norm(quat[1:]), quat[0])
        axis = quat[1:] / max(np.linalg.norm(quat[1:]), 1e-12)
        rows.append(np.concatenate([axis * angle, o[:3, 3], q]))
    x = np.array(rows)
    x = x - x.mean(0)
    ev = np.linalg.svd(x, compute_uv=False) ** 2
    fvr = 100.0 * float(ev[0] / max(ev.sum(), 1e-12))
    jstd = float(np.array([q for _, q in poses]).std(0).mean())
    return fvr, jstd


def run(args) -> dict:
    import torch
    from PIL import Image

    from dex_proposal.api import Proposer, default_config
    from dex_proposal.synthesis import parse_stage_iters
    from dex_proposal.sim_eval import EvalConfig, FloatingHandEvaluator, ObjectGeometry, summarize
    from dex_proposal.viz import grid_image, render_grasp
    from dex_sim.env import SimEnv
    from dex_sim.objects import convex_parts, load_mesh, load_object_set

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    objects = load_object_set(args.objects)
    if args.split != "all" and args.objects.startswith("builtin") and "/" not in args.objects:
        objects = objects.split(args.split)
    specs = list(objects.objects)[: args.n_objects] if args.n_objects > 0 else list(objects.objects)
    ecfg = EvalConfig(hold=args.hold)
    results: dict = {"config": vars(args).copy(), "hands": {}}
    results["config"]["torch_threads"] = torch.get_num_threads()
    images_written = []
    for robot_name in args.robots:
        cfg = default_config()
        syn = replace(cfg.synthesis, n_candidates=args.candidates, device=args.device, iter_scale=args.iter_scale,
                      stage_iters=parse_stage_iters(args.stage_iters))
        if args.squeeze_scale is not None:  # every hand's s in squeeze = grasp + s (grasp - pregrasp)
            from dex_description.config import load_robot_config

            syn = replace(syn, squeeze_scale={load_robot_config(robot_name).hand.name: float(args.squeeze_scale)})
        if args.squeeze_force is not None:  # force-aware squeeze for every hand (0: joint-space)
            syn = replace(syn, squeeze_force={"*": float(args.squeeze_force)})
        cfg = replace(cfg, synthesis=syn, top_k=args.grasps, processes=args.processes,
                      worker_threads=max(1, args.threads // args.processes))
        proposers = {}
        for kind in args.inputs:  # complete: BODex's floating setting (no table); partial: on the table
            table = None if (kind == "complete" and not args.table_for_complete) else 0.0
            proposers[kind] = Proposer(robot_name, replace(cfg, synthesis=replace(cfg.synthesis, table_z=table)))
        robot = proposers[args.inputs[0]].robot
        env = SimEnv(robot=robot_name, object_set=args.objects if not args.objects.startswith("builtin") else "builtin")
        per_input: dict = {}
        for kind in args.inputs:
            per_input[kind] = {"outcomes": [], "synth_s": 0.0, "n_props": 0, "n_cands": 0, "objects": [],
                               "fvr": [], "jstd": [], "no_proposal": {}}
        for oi, spec in enumerate(specs):
            v_obj, f_obj = load_mesh(spec)
            parts_local = convex_parts(spec)
            for pl in range(args.placements):
                seed = args.seed + 1000 * pl + oi
                env.reset(seed=seed, object_names=[spec.name])
                inst = env.object_names[0]
                world_T_object = env.object_poses()[inst]
                R, t = world_T_object[:3, :3], world_T_object[:3, 3]
                parts = [(p @ R.T + t, _hull_faces(p)) for p in parts_local]
                mass = args.mass if args.mass > 0 else spec.mass_kg
                ev = FloatingHandEvaluator(robot, ObjectGeometry(parts, mass, spec.name),
                                           replace(ecfg, friction=(spec.friction[0], spec.friction[1])))
                rng = np.random.default_rng(seed)
                for kind in args.inputs:
                    acc = per_input[kind]
                    if kind == "complete":
                        pts, nrm = complete_cloud(v_obj, f_obj, world_T_object, args.points, seed)
                    else:
                        pts, nrm = partial_cloud(env, inst, rng)
                    t0 = time.perf_counter()
                    res = proposers[kind].propose(pts, nrm, seed=seed)
                    dt = time.perf_counter() - t0
                    acc["synth_s"] += dt
                    acc["n_props"] += len(res.proposals)
                    acc["n_cands"] += int(res.info.get("n_candidates", 0))
                    outs = [ev.evaluate(p.pregrasp.world_T_root, p.pregrasp.actuated, p.grasp.world_T_root,
                                        p.grasp.actuated, p.squeeze.actuated) for p in res.proposals]
                    acc["outcomes"] += outs
                    if not res.proposals:
                        acc["no_proposal"][res.status.value] = acc["no_proposal"].get(res.status.value, 0) + 1
                    fvr, jstd = diversity([(p.grasp.world_T_root, p.grasp.joints) for p in res.proposals], world_T_object)
                    if math.isfinite(fvr):
                        acc["fvr"].append(fvr)
                        acc["jstd"].append(jstd)
                    ssr = 100.0 * np.mean([o.success for o in outs]) if outs else float("nan")
                    acc["objects"].append({"object": spec.name, "placement": pl, "status": res.status.value,
                                           "rejections": res.info.get("rejections", {}),
                                           "n": len(outs), "ssr": ssr, "synth_s": dt,
                                           "partial": bool(res.info.get("partial", False)),
                                           "n_points": int(res.info.get("n_points", len(pts)))})
                    _log(f"[{robot_name} {kind}] {spec.name} #{pl}: {res.status.value}, {len(outs)} grasps, "
                         f"SSR {ssr:.0f}%, {dt:.1f} s")
                    if oi < args.image_objects and pl == 0 and outs:
                        ims = [render_grasp(ev, p.grasp.world_T_root, p.grasp.actuated, size=(240, 240))
                               for p in res.proposals[:3]]
                        acc.setdefault("images", []).extend(ims)
        hand_res = {}
        for kind, acc in per_input.items():
            s = summarize(acc["outcomes"])
            s.update({
                "objects": len(acc["objects"]),
                "grasps_per_s": acc["n_props"] / max(acc["synth_s"], 1e-9),
                "candidates_per_s": acc["n_cands"] / max(acc["synth_s"], 1e-9),
                "synth_s_per_object": acc["synth_s"] / max(len(acc["objects"]), 1),
                "fvr": float(np.mean(acc["fvr"])) if acc["fvr"] else float("nan"),
                "joint_std": float(np.mean(acc["jstd"])) if acc["jstd"] else float("nan"),
                "no_proposal": acc["no_proposal"],
                "per_object": acc["objects"],
            })
            hand_res[kind] = s
            if acc.get("images"):
                img = Path(out) / f"proposal_{robot_name}_{kind}.png"
                Image.fromarray(grid_image(acc["images"], 3)).save(img)
                images_written.append(img)
        results["hands"][robot_name] = hand_res
        for proposer in proposers.values():
            proposer.close()
        env.close()
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "results.md").write_text(markdown(results))
    if args.images_to:
        dst = Path(args.images_to)
        dst.mkdir(parents=True, exist_ok=True)
        for img in images_written:
            shutil.copy(img, dst / img.name)
    return results


def markdown(results: dict) -> str:
    c = results["config"]
    lines = [
        "# Grasp-proposal benchmark (BODex floating-hand protocol, MuJoCo)",
        "",
        f"objects `{c['objects']}` (split {c['split']}), {c['placements']} placement(s) each, top {c['grasps']} of "
        f"{c['candidates']} candidates, device `{c['device']}`, {c['torch_threads']} torch thread(s)"
        f"{'' if c.get('processes', 1) == 1 else ' over ' + str(c['processes']) + ' processes'}, iteration scale "
        f"{c['iter_scale']}, hold {c['hold']} s per direction, object mass "
        f"{'objects.yaml' if not c.get('mass') else str(c['mass']) + ' kg'}, squeeze scale "
        f"{'per hand (robot YAML hand.synthesis)' if c.get('squeeze_scale') is None else c['squeeze_scale']}, "
        f"squeeze force {'per hand (robot YAML)' if c.get('squeeze_force') is None else str(c['squeeze_force']) + ' N'}.",
        "",
        "| hand | input | objects | grasps | SSR % | PD mm | SPD mm | CDC mm | FVR % | joint std rad | grasps/s | candidates/s | s/object | no proposal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for hand, per in results["hands"].items():
        for kind, s in per.items():
            nop = ", ".join(f"{k}: {v}" for k, v in s["no_proposal"].items()) or "-"
            lines.append(f"| {hand} | {kind} | {s['objects']} | {s['n']} | {s['ssr']:.1f} | {s['penetration_mm']:.2f} | "
                         f"{s['self_penetration_mm']:.2f} | {s['cdc_mm']:.2f} | {s['fvr']:.1f} | {s['joint_std']:.3f} | "
                         f"{s['grasps_per_s']:.2f} | {s['candidates_per_s']:.2f} | {s['synth_s_per_object']:.1f} | {nop} |")
    lines += ["", "Targets (issue 5): SSR >= 80 % complete, >= 70 % partial; PD <= 1 mm; >= 5 grasps/s on 2 CPU cores.",
              "PD/SPD/CDC are means over grasps at the grasp pose; FVR and joint std are per object, averaged.", ""]
    for hand, per in results["hands"].items():
        for kind, s in per.items():
            lines.append(f"### {hand} / {kind}")
            lines.append("")
            lines.append("| object | placement | status | grasps | SSR % | synth s | partial? |")
            lines.append("|---|---|---|---|---|---|---|")
            for o in s["per_object"]:
                lines.append(f"| {o['object']} | {o['placement']} | {o['status']} | {o['n']} | {o['ssr']:.0f} | "
                             f"{o['synth_s']:.1f} | {o['partial']} |")
            lines.append("")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dex_proposal.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--robots", nargs="+", default=["ur10e_shadow", "ur5e_leap"])
    p.add_argument("--objects", default="builtin", help="builtin (use --split), builtin/test, or a directory with objects.yaml")
    p.add_argument("--split", default="test", choices=["test", "train", "all"], help="split of the built-in set")
    p.add_argument("--n-objects", type=int, default=0, help="first N objects only (0: all)")
    p.add_argument("--placements", type=int, default=2, help="settled poses per object")
    p.add_argument("--grasps", type=int, default=20, help="proposals tested per object (top-K)")
    p.add_argument("--candidates", type=int, default=64, help="candidates optimised per object")
    p.add_argument("--inputs", nargs="+", default=["complete", "partial"], choices=["complete", "partial"])
    p.add_argument("--points", type=int, default=3000, help="points sampled on complete meshes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--processes", type=int, default=1,
                   help="processes each synthesis's candidates are shared over (dex_proposal.pool), "
                        "each with --threads / processes torch threads")
    p.add_argument("--iter-scale", type=float, default=1.0, help="scale every stage's iterations")
    p.add_argument("--stage-iters", default="", help="set stages' iterations after the scale, e.g. coarse=120,fine=40")
    p.add_argument("--squeeze-scale", type=float, default=None,
                   help="s in squeeze = grasp + s (grasp - pregrasp) for every hand (default: the synthesis "
                        "config's per-hand value, tuned for lifting on the table; BODex: 1)")
    p.add_argument("--squeeze-force", type=float, default=None,
                   help="[N] force-aware squeeze (dex_proposal.squeeze) with this force for every hand; 0: the "
                        "joint-space squeeze (default: each hand's robot YAML, hand.synthesis.squeeze_force)")
    p.add_argument("--mass", type=float, default=0.0,
                   help="[kg] override every object's mass (BODex used 0.03); 0: objects.yaml masses")
    p.add_argument("--hold", type=float, default=1.0, help="[s] force applied per direction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table-for-complete", action="store_true",
                   help="synthesise complete-mesh grasps with the table too (default: floating, as BODex)")
    p.add_argument("--image-objects", type=int, default=3, help="objects with sample images")
    p.add_argument("--out", default="out/bench/proposal")
    p.add_argument("--images-to", default="", help="also copy the sample images here (e.g. docs/images)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 objects, 1 placement, 6 grasps of 16")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.n_objects, args.placements, args.grasps, args.candidates = 2, 1, 6, 16
    t0 = time.time()
    results = run(args)
    _log(markdown(results).split("### ")[0])
    _log(f"done in {time.time() - t0:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
