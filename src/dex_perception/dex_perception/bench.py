"""``python -m dex_perception.bench``: perception quality and latency on sim-rendered scenes.

For each robot camera config (the sim's tabletop camera with each robot combo in view), for
``--scenes`` seeded ``dex_sim.env.SimEnv`` episodes with 1..5 objects from ``--objects`` (a set
name like ``builtin/test`` or a directory with an ``objects.yaml``):

1. render RGB + metric depth (640x480) and the ground-truth segmentation; read the camera
   extrinsics from the calibration YAML the sim writes (the same path as on a real robot);
2. pick a visible target object at random (seeded) and prompt ``point X Y Z`` with the visible
   ground-truth surface point nearest to its visible centroid ("the user points at the object");
3. time :meth:`Perception.process` (depth -> object cloud with normals; everything after the
   image is in memory) on this CPU;
4. score: IoU of the selected object's depth pixels vs the target's ground-truth pixels (failed
   frames count as IoU 0), whether the right object was selected, the angle between each output
   normal and the mesh normal at the nearest point of the target's mesh (posed with the
   ground-truth object pose; dense area-weighted samples of the surfaces facing the camera, face
   normals -- faceted meshes add a few degrees) for output points within 5 mm of that surface, the fraction of output points
   that are (on target), their median distance to the surface, and whether ``largest`` picks the
   object with the most visible pixels.

Writes JSON + a markdown table (``--out``) and PNGs of a few segmentations next to them
(RGB | zoom on the objects: selected mask in green, ground truth outlined in red, other clusters
tinted). Each robot camera config gets its own seeded scenes.

Example (what the README's numbers come from; run it on a quiet machine for latency)::

    python -m dex_perception.bench --scenes 100 --out out/bench/perception.json
    python -m dex_perception.bench --objects path/to/my_set --scenes 50 --robots ur5e_leap
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported (by dex_sim)

ROBOTS = ("ur5e_leap", "ur10e_shadow")
ON_SURFACE_M = 0.005  # [m] output points farther than this from the target's mesh are not scored for normals


def _percentile(values, q: float) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if v.size else None


def _surface_samples(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int):
    """(points (count, 3), face normals (count, 3)) sampled uniformly by area on a mesh."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    pts, face_idx = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(pts), np.asarray(mesh.face_normals)[face_idx]


def _zoom(img: np.ndarray, regions: list[np.ndarray], pad: int = 24) -> np.ndarray:
    """``img`` cropped to the bounding box of the ``regions`` masks (padded, 4:3) and scaled back to
    the image size, so small objects are visible next to the full view."""
    from PIL import Image

    h, w = img.shape[:2]
    any_mask = np.zeros((h, w), bool)
    for r in regions:
        any_mask |= r
    if not any_mask.any():
        return img
    v, u = np.nonzero(any_mask)
    u0, u1, v0, v1 = u.min() - pad, u.max() + pad, v.min() - pad, v.max() + pad
    cw, ch = u1 - u0, v1 - v0
    if cw * h < ch * w:  # widen to the image's aspect ratio
        cw = int(np.ceil(ch * w / h))
    else:
        ch = int(np.ceil(cw * h / w))
    cw, ch = min(cw, w), min(ch, h)
    cu, cv = (u0 + u1) // 2, (v0 + v1) // 2
    u0 = int(np.clip(cu - cw // 2, 0, w - cw))
    v0 = int(np.clip(cv - ch // 2, 0, h - ch))
    crop = img[v0:v0 + ch, u0:u0 + cw]
    return np.asarray(Image.fromarray(crop).resize((w, h), Image.NEAREST))


def _overlay(rgb: np.ndarray, mask: np.ndarray | None, gt: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """RGB with other clusters tinted, the selected mask in green and the ground truth outlined red."""
    out = rgb.astype(np.float32).copy()
    if labels is not None:
        palette = np.array([[255, 200, 0], [0, 160, 255], [255, 0, 200], [0, 255, 255], [255, 128, 0], [128, 0, 255]])
        for k in range(int(labels.max()) + 1):
            m = labels == k
            out[m] = 0.55 * out[m] + 0.45 * palette[k % len(palette)]
    if mask is not None:
        out[mask] = 0.35 * out[mask] + 0.65 * np.array([0, 230, 0])
    edge = gt & ~(np.roll(gt, 1, 0) & np.roll(gt, -1, 0) & np.roll(gt, 1, 1) & np.roll(gt, -1, 1))
    edge |= np.roll(edge, 1, 0) | np.roll(edge, 1, 1)
    out[edge] = (255, 0, 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def run_robot(robot: str, objects: str, scenes: int, min_objects: int, max_objects: int, seed: int, cfg,
              out_dir: Path, images: int, depth_noise: float = 0.0, depth_encoding: str = "32FC1",
              seed_offset: int = 0, worst: int = 0, fusion: int = 1, log=print) -> dict:
    """Benchmark one robot camera config; returns the summary and the per-scene rows."""
    from dex_sim.env import SEG_FIRST_OBJECT, ResetError, SimEnv
    from dex_sim.objects import load_mesh
    from scipy.spatial import cKDTree

    from dex_perception.calibration import load_extrinsics
    from dex_perception.camera import CameraModel, depth_to_metres
    from dex_perception.errors import PerceptionError
    from dex_perception.pipeline import Perception

    env = SimEnv(robot=robot, object_set=objects)
    info = env.camera_info()
    calib = env.write_calibration(out_dir / f"calibration_{robot}.yaml")
    ext = load_extrinsics(calib, info.base_frame)
    camera = CameraModel.from_camera_info(info.width, info.height, info.K.ravel(), frame_id=info.frame_id)
    perception = Perception(cfg, ext)
    rng = np.random.default_rng(seed)
    mesh_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows: list[dict] = []
    failures: dict[str, int] = {}
    resets_failed = 0
    warmed = False
    attempt = 0
    t_start = time.monotonic()
    while len(rows) < scenes and attempt < 3 * scenes:
        scene_seed = seed * 1_000_003 + seed_offset + attempt
        attempt += 1
        n = int(rng.integers(min_objects, max_objects + 1))
        try:
            env.reset(seed=scene_seed, num_objects=n)
        except ResetError as exc:
            resets_failed += 1
            log(f"  [{robot}] seed {scene_seed}: reset failed ({exc}); next seed")
            continue
        frame = env.render()
        seg = env.render_segmentation().ids
        noise_rng = np.random.default_rng(scene_seed)
        frames = []
        for _ in range(max(1, fusion)):  # a static scene seen `fusion` times (independent noise)
            depth = frame.depth
            if depth_noise > 0:  # axial noise growing with z^2 (structured-light/stereo-like), seeded
                depth = depth + noise_rng.normal(0, depth_noise, depth.shape).astype(np.float32) * depth ** 2
            if depth_encoding == "16UC1":  # what the sim node / a RealSense publishes: integer millimetres
                from dex_sim.render import depth_to_mm

                depth = depth_to_mm(depth)  # decoded by Perception (uint16 * 1 mm)
            frames.append(depth)
        if len(frames) > 1:
            from dex_perception.fusion import fuse_depth

            depth = fuse_depth(frames, cfg.fusion_min_valid)
        valid = np.isfinite(depth_to_metres(depth))
        names = env.object_names
        visible = [int(np.count_nonzero((seg == SEG_FIRST_OBJECT + k) & valid)) for k in range(len(names))]
        candidates = [k for k, v in enumerate(visible) if v >= 2 * cfg.min_cluster_points]
        if not candidates:
            log(f"  [{robot}] seed {scene_seed}: no object visible enough; next seed")
            continue
        if not warmed:  # imports and caches (open3d, ray grid) out of the timing
            try:
                perception.process(depth, camera, frame.rgb, "largest")
            except PerceptionError:
                pass
            warmed = True
        target = int(rng.choice(candidates))
        gt = (seg == SEG_FIRST_OBJECT + target) & valid
        v, u = np.nonzero(gt)
        z = frame.depth[v, u].astype(np.float64)  # the exact render, for the prompt point
        rays = camera.rays()[v, u].astype(np.float64)
        gt_pts = np.column_stack([rays * z[:, None], z]) @ ext.base_T_camera[:3, :3].T + ext.base_T_camera[:3, 3]
        prompt_pt = gt_pts[np.argmin(np.linalg.norm(gt_pts - gt_pts.mean(axis=0), axis=1))]
        prompt = f"point {prompt_pt[0]:.4f} {prompt_pt[1]:.4f} {prompt_pt[2]:.4f}"
        row = {"seed": scene_seed, "num_objects": n, "visible_objects": sum(x >= 2 * cfg.min_cluster_points for x in visible),
               "target": names[target], "target_pixels": int(gt.sum()), "prompt": prompt}
        t0 = time.perf_counter()
        try:
            result = perception.process(depth, camera, frame.rgb, prompt)
        except PerceptionError as exc:
            row.update(status=exc.status, message=str(exc), latency_ms=1e3 * (time.perf_counter() - t0), iou=0.0,
                       correct=False)
            failures[exc.status] = failures.get(exc.status, 0) + 1
            rows.append(row)
            continue
        row["latency_ms"] = 1e3 * (time.perf_counter() - t0)
        row["stages_ms"] = {k: 1e3 * t for k, t in result.timings.items()}
        mask = result.mask
        row["iou"] = float(np.count_nonzero(mask & gt) / max(1, np.count_nonzero(mask | gt)))
        hit = seg[mask]
        majority = int(np.bincount(hit[hit >= 0]).argmax()) if hit.size else -1
        row.update(status="ok", correct=majority == SEG_FIRST_OBJECT + target, num_clusters=result.num_objects,
                   points=int(result.points.shape[0]))
        # normals and surface distance against the posed ground-truth mesh
        name = names[target]
        spec = env.object_specs()[name]
        if spec.name not in mesh_cache:
            mesh_cache[spec.name] = load_mesh(spec)
        verts, faces = mesh_cache[spec.name]
        pose = env.object_poses()[name]
        world_verts = verts @ pose[:3, :3].T + pose[:3, 3]
        samples, normals = _surface_samples(world_verts, faces, 60000, scene_seed)
        # only surfaces facing the camera can be seen: a noisy point near a thin wall (cup, bowl)
        # must not be scored against the wall's hidden side
        front = np.einsum("ij,ij->i", normals, ext.camera_position - samples) > 0
        samples, normals = samples[front], normals[front]
        dist, idx = cKDTree(samples).query(result.points.astype(np.float64))
        on = dist <= ON_SURFACE_M  # normals are scored where the point is on the target (not a merged neighbour)
        cos = np.clip(np.einsum("ij,ij->i", result.normals[on].astype(np.float64), normals[idx[on]]), -1, 1)
        angle = np.degrees(np.arccos(cos))
        row.update(on_target=float(np.mean(on)), surface_dist_mm_median=1e3 * float(np.median(dist)), _angles=angle)
        if angle.size:
            row.update(normal_err_deg_median=float(np.median(angle)), normal_err_deg_p90=float(np.percentile(angle, 90)),
                       normal_flipped=float(np.mean(angle > 90)))
        # 'largest' picks the object with the most visible pixels
        largest = perception.select(result.analysis, "largest")
        hit = seg[largest.mask]
        row["largest_correct"] = bool(hit.size and int(np.bincount(hit[hit >= 0]).argmax()) ==
                                      SEG_FIRST_OBJECT + int(np.argmax(visible)))
        rows.append(row)
        if len(rows) <= images:
            from PIL import Image

            labels = result.analysis.label_image()
            img = np.concatenate([frame.rgb, _zoom(_overlay(frame.rgb, mask, gt, labels), [labels >= 0, gt])], axis=1)
            Image.fromarray(img).save(out_dir / f"perception_{robot}_{len(rows):02d}.png")
        if len(rows) % 10 == 0 or len(rows) == scenes:
            ious = [r["iou"] for r in rows]
            lat = [r["latency_ms"] for r in rows]
            log(f"  [{robot}] {len(rows)}/{scenes} scenes  IoU median {np.median(ious):.3f}  latency p50 "
                f"{np.median(lat):.1f} ms  ({time.monotonic() - t_start:.0f} s)")
    for k, row in enumerate(sorted(rows, key=lambda r: r["iou"])[:worst]):  # re-render the worst scenes
        from PIL import Image

        env.reset(seed=row["seed"], num_objects=row["num_objects"])
        frame = env.render()
        seg = env.render_segmentation().ids
        target = env.object_names.index(row["target"])
        gt = (seg == SEG_FIRST_OBJECT + target) & np.isfinite(frame.depth)
        try:
            res = perception.process(frame.depth, camera, frame.rgb, row["prompt"])
            mask, labels = res.mask, res.analysis.label_image()
        except PerceptionError:
            mask, labels = None, None
        regions = [gt] + ([labels >= 0] if labels is not None else [])
        img = np.concatenate([frame.rgb, _zoom(_overlay(frame.rgb, mask, gt, labels), regions)], axis=1)
        Image.fromarray(img).save(out_dir / f"perception_{robot}_worst_{k + 1}.png")
        row["worst_picture"] = f"perception_{robot}_worst_{k + 1}.png"
    env.close()
    angles = np.concatenate([r.pop("_angles") for r in rows if "_angles" in r] or [np.zeros(0)])
    ok = [r for r in rows if r["status"] == "ok"]
    ious = [r["iou"] for r in rows]
    lat = [r["latency_ms"] for r in rows]
    stages = sorted({k for r in ok for k in r.get("stages_ms", {})})
    summary = {
        "robot": robot, "objects": objects, "scenes": len(rows), "resets_failed": resets_failed,
        "failures": failures, "objects_per_scene": [min_objects, max_objects],
        "iou_median": _percentile(ious, 50), "iou_p10": _percentile(ious, 10), "iou_mean": float(np.mean(ious)) if ious else None,
        "target_selected": float(np.mean([r["correct"] for r in rows])) if rows else None,
        "largest_selected": float(np.mean([r["largest_correct"] for r in ok])) if ok else None,
        "normal_err_deg_median": _percentile(angles, 50), "normal_err_deg_p90": _percentile(angles, 90),
        "normal_flipped": float(np.mean(angles > 90)) if angles.size else None,
        "surface_dist_mm_median": _percentile([r["surface_dist_mm_median"] for r in ok], 50),
        "points_on_target": float(np.mean([r["on_target"] for r in ok])) if ok else None,
        "points_median": _percentile([r["points"] for r in ok], 50),
        "latency_ms_p50": _percentile(lat, 50), "latency_ms_p95": _percentile(lat, 95),
        "stage_ms_p50": {k: _percentile([r["stages_ms"][k] for r in ok if k in r["stages_ms"]], 50) for k in stages},
        "image_size": [camera.width, camera.height],
    }
    return {"summary": summary, "rows": rows}


def table(summaries: list[dict]) -> str:
    """Markdown table of the per-robot summaries."""
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    head = ("| robot camera config | scenes | IoU median | IoU p10 | target right | `largest` right | normal err median / p90 [deg] "
            "| flipped | on target | surface dist [mm] | points | latency p50 / p95 [ms] | failures |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for s in summaries:
        fails = ", ".join(f"{k} {v}" for k, v in sorted(s["failures"].items())) or "none"
        lines.append(
            f"| {s['robot']} ({s['image_size'][0]}x{s['image_size'][1]}) | {s['scenes']} | {f(s['iou_median'], '.3f')} | "
            f"{f(s['iou_p10'], '.3f')} | {f(s['target_selected'], '.1%')} | {f(s['largest_selected'], '.1%')} | "
            f"{f(s['normal_err_deg_median'], '.1f')} / {f(s['normal_err_deg_p90'], '.1f')} | "
            f"{f(s['normal_flipped'], '.2%')} | {f(s['points_on_target'], '.1%')} | {f(s['surface_dist_mm_median'], '.2f')} | "
            f"{f(s['points_median'], '.0f')} | "
            f"{f(s['latency_ms_p50'], '.1f')} / {f(s['latency_ms_p95'], '.1f')} | {fails} |")
    stages = sorted({k for s in summaries for k in s["stage_ms_p50"]})
    stage_table = "\n\nStage latency p50 [ms]:\n\n| robot | " + " | ".join(stages) + " |\n|---|" + "---|" * len(stages) + "\n"
    for s in summaries:
        stage_table += f"| {s['robot']} | " + " | ".join(f(s["stage_ms_p50"].get(k), ".2f") for k in stages) + " |\n"
    return head + "\n".join(lines) + stage_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dex_perception.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", nargs="+", default=list(ROBOTS), help="robot combos (camera configs)")
    parser.add_argument("--objects", default="builtin/test", help="object set name or directory with objects.yaml")
    parser.add_argument("--scenes", type=int, default=100, help="scenes per robot camera config")
    parser.add_argument("--min-objects", type=int, default=1)
    parser.add_argument("--max-objects", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="", help="YAML of PerceptionConfig overrides")
    parser.add_argument("--depth-noise", type=float, default=0.0,
                        help="std of added axial depth noise at 1 m [m] (scaled by z^2); 0 = the sim's exact depth")
    parser.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1",
                        help="32FC1: float metres as rendered; 16UC1: rounded to integer millimetres (sim node, RealSense)")
    parser.add_argument("--fusion", type=int, default=1,
                        help="fuse this many noisy copies of each frame (dex_perception.fusion) before processing")
    parser.add_argument("--images", type=int, default=4, help="segmentation PNGs per robot (the first scenes)")
    parser.add_argument("--worst", type=int, default=2, help="segmentation PNGs of the lowest-IoU scenes per robot")
    parser.add_argument("--out", default="out/bench/perception.json")
    args = parser.parse_args(argv)
    if not 1 <= args.min_objects <= args.max_objects:
        parser.error("need 1 <= --min-objects <= --max-objects")

    from dex_perception.config import default_config, load_config
    from dex_perception.errors import PerceptionError

    try:
        cfg = load_config(args.config) if args.config else default_config()
    except PerceptionError as exc:
        print(f"perception bench: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    print(f"perception benchmark: {args.scenes} scenes x {args.robots}, objects {args.objects}, "
          f"{args.min_objects}-{args.max_objects} per scene, load average {load_start[0]:.2f} on {os.cpu_count()} CPUs")
    results = []
    for index, robot in enumerate(args.robots):
        try:  # each robot camera config gets its own scenes (seed offset 10007 per config)
            results.append(run_robot(robot, args.objects, args.scenes, args.min_objects, args.max_objects, args.seed, cfg,
                                     out.parent, args.images, args.depth_noise, args.depth_encoding,
                                     seed_offset=10007 * index, worst=args.worst, fusion=args.fusion))
        except Exception as exc:  # noqa: BLE001 - report which robot/set failed, keep the others
            if type(exc).__module__.startswith(("dex_sim", "dex_description")):
                print(f"perception bench: {robot}: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 2
            raise
    summaries = [r["summary"] for r in results]
    import open3d

    meta = {"command": " ".join(["python -m dex_perception.bench", *(argv if argv is not None else sys.argv[1:])]),
            "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "load_average_start": load_start, "load_average_end": os.getloadavg(), "open3d": open3d.__version__, "python": platform.python_version(),
            "depth_noise": args.depth_noise, "depth_encoding": args.depth_encoding, "fusion": args.fusion,
            "config": args.config or "default",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    out.write_text(json.dumps({"meta": meta, "summaries": summaries, "rows": {r["summary"]["robot"]: r["rows"] for r in results}},
                              indent=1, default=float))
    md = table(summaries)
    out.with_suffix(".md").write_text(f"Command: `{meta['command']}`\n\n" + md)
    print(md)
    print(f"wrote {out}, {out.with_suffix('.md')} and perception_*.png in {out.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
