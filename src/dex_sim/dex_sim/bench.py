"""Simulation speed benchmark: physics real-time factor, camera frame rate, reset time, ROS rates.

::

    python -m dex_sim.bench                       # both combos, JSON + markdown in out/bench/
    python -m dex_sim.bench --robots ur5e_leap --no-ros --sim-seconds 2

Physics is headless (no rendering) with the robot static or the arm moving along a looping
trajectory, with 1, 3 and 5 objects; the real-time factor is simulated seconds per wall second
on one core (MuJoCo is single-threaded). The camera rate is RGB + metric depth 640x480 in one
render pass (plus the 16UC1 conversion the node does). ROS rates: the sim node is started as a
subprocess and the messages on its topics are counted for a few seconds (it then shares the
machine's cores with this process). Numbers depend on the machine's load: the load average
before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import mujoco
import numpy as np

from dex_sim.env import JointTrajectoryCommand, SimEnv, TrajectoryPoint
from dex_sim.render import depth_to_mm


def _arm_loop(env: SimEnv, duration: float) -> JointTrajectoryCommand:
    """A looping arm trajectory around home: 4 waypoints, within 60 % of the velocity limits."""
    home = np.array(env.robot.cfg.arm.named_poses["home"])
    amp = np.array([0.35, 0.2, 0.25, 0.3, 0.3, 0.5])
    pts = []
    n = 8
    for k in range(1, n + 1):
        q = home + amp * np.sin(2 * np.pi * k / n)
        pts.append(TrajectoryPoint(list(q), duration * k / n))
    return JointTrajectoryCommand(env.arm_channel.names, pts)


def physics_rows(robot: str, counts, sim_seconds: float, log) -> list[dict]:
    rows = []
    env = SimEnv(robot=robot, num_objects=1)
    for n in counts:
        t0 = time.perf_counter()
        env.reset(seed=0, num_objects=n)
        t_reset = time.perf_counter() - t0
        for mode in ("static", "arm_moving"):
            env.reset(seed=0, num_objects=n)
            steps = int(round(sim_seconds / env.dt))
            if mode == "arm_moving":
                env.command_arm(_arm_loop(env, max(sim_seconds, 4.0)))  # truncated by the sim time
            t0 = time.perf_counter()
            env.step(steps)
            wall = time.perf_counter() - t0
            row = {"kind": "physics", "robot": robot, "objects": n, "mode": mode, "sim_s": steps * env.dt,
                   "wall_s": wall, "rtf": steps * env.dt / wall, "step_us": 1e6 * wall / steps, "reset_s": t_reset,
                   "contacts_end": int(env.data.ncon)}
            rows.append(row)
            log(f"  {robot:13s} {mode:10s} {n} objects: RTF {row['rtf']:6.1f}x ({row['step_us']:.0f} us/step), reset {t_reset:.2f} s")
    env.close()
    return rows


def camera_rows(robot: str, frames: int, log) -> list[dict]:
    env = SimEnv(robot=robot, num_objects=3)
    env.reset(seed=0)
    env.render()  # warm-up (GL context, textures)
    times, conv = [], []
    for _ in range(frames):
        t0 = time.perf_counter()
        f = env.render()
        t1 = time.perf_counter()
        depth_to_mm(f.depth)
        times.append(t1 - t0)
        conv.append(time.perf_counter() - t1)
    t0 = time.perf_counter()
    env.render_segmentation()
    t_seg = time.perf_counter() - t0
    c = env.cfg.scene.camera
    med = float(np.median(times))
    row = {"kind": "camera", "robot": robot, "width": c.width, "height": c.height, "frames": frames,
           "rgbd_ms_median": 1e3 * med, "rgbd_ms_p90": 1e3 * float(np.percentile(times, 90)), "fps": 1.0 / med,
           "depth_to_16uc1_ms": 1e3 * float(np.median(conv)), "segmentation_ms": 1e3 * t_seg,
           "mesh_faces": int(env.model.mesh_facenum.sum())}
    log(f"  {robot:13s} camera {c.width}x{c.height} RGB+depth: {row['fps']:.1f} fps "
        f"(median {row['rgbd_ms_median']:.1f} ms, p90 {row['rgbd_ms_p90']:.1f} ms), {row['mesh_faces']} mesh faces")
    frame = env.render()
    seg = env.render_segmentation()
    env.close()
    return [row], (frame, seg)


def ros_rows(robot: str, seconds: float, log) -> list[dict]:
    """Start the node, count messages per topic for ``seconds`` after the first depth image."""
    try:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import CameraInfo, Image, JointState
    except ImportError as exc:
        log(f"  ROS rates skipped: {exc}")
        return []
    proc = subprocess.Popen([sys.executable, "-m", "dex_sim.node", "--ros-args", "-p", f"robot:={robot}", "-p", "num_objects:=3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = Context()
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = Node("dex_sim_bench", context=ctx, start_parameter_services=False)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    topics = {"/joint_states": JointState, "/camera/color/image_raw": Image, "/camera/depth/image_rect_raw": Image,
              "/camera/depth/camera_info": CameraInfo}
    stamps: dict[str, list[float]] = {t: [] for t in topics}
    for t, typ in topics.items():
        node.create_subscription(typ, t, (lambda name: lambda _m: stamps[name].append(time.monotonic()))(t), qos)
    rows = []
    try:
        deadline = time.monotonic() + 90
        while not stamps["/camera/depth/image_rect_raw"] and time.monotonic() < deadline and proc.poll() is None:
            ex.spin_once(timeout_sec=0.05)
        t_start = time.monotonic()
        for v in stamps.values():
            v.clear()
        while time.monotonic() - t_start < seconds:
            ex.spin_once(timeout_sec=0.02)
        for t, v in stamps.items():
            rate = len(v) / seconds
            rows.append({"kind": "ros", "robot": robot, "topic": t, "messages": len(v), "seconds": seconds, "rate_hz": rate})
            log(f"  {robot:13s} {t:32s} {rate:6.1f} Hz")
    finally:
        ex.shutdown(timeout_sec=2)
        node.destroy_node()
        ctx.shutdown()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return rows


def table(rows: list[dict]) -> str:
    out = ["## Physics (headless, one core)\n", "| robot | objects | mode | real-time factor | us/step | reset [s] |",
           "|---|---:|---|---:|---:|---:|"]
    out += [f"| {r['robot']} | {r['objects']} | {r['mode']} | {r['rtf']:.1f}x | {r['step_us']:.0f} | {r['reset_s']:.2f} |"
            for r in rows if r["kind"] == "physics"]
    out += ["", "## Camera (RGB + metric depth, one render pass)\n",
            "| robot | size | fps | median [ms] | p90 [ms] | 16UC1 conversion [ms] | segmentation [ms] | mesh faces |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {r['robot']} | {r['width']}x{r['height']} | {r['fps']:.1f} | {r['rgbd_ms_median']:.1f} | {r['rgbd_ms_p90']:.1f} | "
            f"{r['depth_to_16uc1_ms']:.1f} | {r['segmentation_ms']:.0f} | {r['mesh_faces']} |" for r in rows if r["kind"] == "camera"]
    ros = [r for r in rows if r["kind"] == "ros"]
    if ros:
        out += ["", "## ROS publish rates (sim node subprocess, 3 objects)\n", "| robot | topic | rate [Hz] |", "|---|---|---:|"]
        out += [f"| {r['robot']} | `{r['topic']}` | {r['rate_hz']:.1f} |" for r in ros]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dex_sim.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", nargs="+", default=["ur10e_shadow", "ur5e_leap"])
    parser.add_argument("--objects", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--sim-seconds", type=float, default=3.0, help="simulated seconds per physics row")
    parser.add_argument("--frames", type=int, default=30, help="camera frames per robot")
    parser.add_argument("--ros-seconds", type=float, default=5.0)
    parser.add_argument("--no-ros", action="store_true", help="skip the ROS node rates")
    parser.add_argument("--out", default="out/bench/sim.json")
    parser.add_argument("--images", default="", help="directory for a scene picture per robot (RGB | depth | labels)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    load0 = os.getloadavg()
    print(f"sim benchmark: {os.cpu_count()} CPUs, load average {load0[0]:.2f}, MuJoCo {mujoco.__version__}, MUJOCO_GL={os.environ['MUJOCO_GL']}")
    rows: list[dict] = []
    for robot in args.robots:
        rows += physics_rows(robot, args.objects, args.sim_seconds, print)
        cam, (frame, seg) = camera_rows(robot, args.frames, print)
        rows += cam
        if args.images:
            _picture(Path(args.images) / f"sim_scene_{robot}.png", frame, seg)
        if not args.no_ros:
            rows += ros_rows(robot, args.ros_seconds, print)
    load1 = os.getloadavg()
    meta = {"cpus": os.cpu_count(), "load_average_before": load0, "load_average_after": load1, "mujoco": mujoco.__version__,
            "mujoco_gl": os.environ["MUJOCO_GL"], "machine": platform.machine(), "python": platform.python_version(),
            "note": "other processes may share the cores; see the load averages"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = table(rows) + f"\n{meta['cpus']} CPUs, load average {load0[0]:.2f} before / {load1[0]:.2f} after, MuJoCo {meta['mujoco']}.\n"
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def _picture(path: Path, frame, seg) -> None:
    from PIL import Image

    depth = np.nan_to_num(frame.depth, nan=0.0)
    d8 = (255 * np.clip(depth / 3.0, 0, 1)).astype(np.uint8)
    rng = np.random.default_rng(1)
    colours = rng.integers(40, 255, size=(max(seg.labels) + 1, 3)).astype(np.uint8)
    colours[0] = 0
    labels = colours[seg.ids]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.hstack([frame.rgb, np.stack([d8] * 3, -1), labels])).save(path, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
