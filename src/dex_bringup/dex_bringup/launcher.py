"""``dexgrasp launch sim|real [name:=value ...]``: start the graph as processes in a pip venv.

The same nodes, parameters and remappings as ``ros2 launch dex_bringup <mode>.launch.py`` (both
resolve ``config/graph/dexgrasp.yaml`` through :mod:`dex_bringup.graph`), without the ``launch``
package (it has no wheel). Each node runs as ``python -m <module> --ros-args -r __node:=<name>
--params-file <tmp.yaml> -r from:=to ...``; output lines are prefixed with the node name.

Ctrl-C (SIGINT) or SIGTERM stops every node (SIGINT, then SIGTERM, then SIGKILL after grace
periods) and nothing is left behind. When a node exits on its own, the launcher reports it and
stops the rest (exit status 1), like ``ros2 launch`` with ``on_exit=Shutdown``.

``--print`` shows the resolved graph as JSON and starts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from dex_bringup.graph import GraphError, NodeSpec, load_graph, parse_cli_args


def node_command(node: NodeSpec, params_dir: Path, python: str = sys.executable) -> list[str]:
    """The command line that starts ``node`` (writes its parameter file into ``params_dir``)."""
    params = params_dir / f"{node.name}.yaml"
    params.write_text(yaml.safe_dump({node.name: {"ros__parameters": dict(node.parameters)}}, sort_keys=True))
    cmd = [python, "-m", node.module, "--ros-args", "-r", f"__node:={node.name}", "--params-file", str(params)]
    for src, dst in node.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def _pump(name: str, stream, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"[{name}] {line}")
        out.flush()
    stream.close()


class Launcher:
    """Starts and supervises the resolved nodes. Use as a context manager or call :meth:`stop`."""

    def __init__(self, nodes: list[NodeSpec], env: dict | None = None, log=print):
        self.nodes = nodes
        self.env = dict(os.environ if env is None else env)
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="dexgrasp-launch-")
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for node in self.nodes:
            cmd = node_command(node, Path(self._tmp.name))
            proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    bufsize=1, start_new_session=True)
            self.procs[node.name] = proc
            t = threading.Thread(target=_pump, args=(node.name, proc.stdout, sys.stdout), daemon=True)
            t.start()
            self._threads.append(t)
            self.log(f"[launch] started {node.name} (pid {proc.pid}): python -m {node.module}")

    def exited(self) -> dict[str, int]:
        """Nodes that have exited, with their return codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self, grace_s: float = 10.0) -> dict[str, int]:
        """SIGINT every node, then SIGTERM, then SIGKILL (each after ``grace_s``); returns exit codes."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for p in alive:
                try:
                    os.killpg(p.pid, sig)  # the node and anything it started
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(p.poll() is None for p in alive):
                time.sleep(0.05)
        for t in self._threads:
            t.join(timeout=2.0)
        self._tmp.cleanup()
        return {n: p.returncode for n, p in self.procs.items()}

    def __enter__(self) -> "Launcher":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexgrasp launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["sim", "real"])
    parser.add_argument("args", nargs="*", help="launch arguments, name:=value (e.g. robot:=ur10e_shadow)")
    parser.add_argument("--print", action="store_true", help="print the resolved graph as JSON and exit")
    parser.add_argument("--graph", help="graph YAML (default: config/graph/dexgrasp.yaml)")
    ns = parser.parse_args(argv)
    try:
        graph = load_graph(ns.graph)
        args = parse_cli_args(ns.args)
        nodes = graph.resolve(ns.mode, args)
        missing = graph.missing_files(ns.mode, args)
    except GraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in missing:  # the graph still starts; the node that needs the file reports it too
        print(f"error: {problem}", file=sys.stderr)
    if ns.print:
        print(json.dumps([n.as_dict() for n in nodes], indent=2))
        return 0
    launcher = Launcher(nodes)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    launcher.start()
    status = 0
    while not stop.is_set():
        dead = launcher.exited()
        if dead:
            for name, code in dead.items():
                print(f"[launch] {name} exited with status {code}; stopping the graph", file=sys.stderr)
            status = 1
            break
        stop.wait(0.2)
    codes = launcher.stop()
    print(f"[launch] stopped: {', '.join(f'{n}={c}' for n, c in codes.items())}")
    return status
