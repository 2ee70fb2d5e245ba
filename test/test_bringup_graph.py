"""One graph description, two ways in: the ROS 2 launch files and `dexgrasp launch` start the same nodes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from dex_bringup.graph import GraphError, load_graph, parse_cli_args
from dex_bringup.launcher import node_command

REPO = Path(__file__).resolve().parents[1]
LAUNCH_DIR = REPO / "src" / "dex_bringup" / "launch"


class _Recorder:
    """Stand-ins for the launch / launch_ros classes the launch files use (no `launch` wheel exists):
    they record their constructor arguments so the test can read what ros2 launch would start."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_launch_modules(values: dict[str, str]) -> dict[str, types.ModuleType]:
    launch = types.ModuleType("launch")
    actions = types.ModuleType("launch.actions")
    substitutions = types.ModuleType("launch.substitutions")
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")

    class LaunchDescription(_Recorder):
        pass

    class DeclareLaunchArgument(_Recorder):
        pass

    class OpaqueFunction(_Recorder):
        pass

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    class Node(_Recorder):
        pass

    launch.LaunchDescription = LaunchDescription
    actions.DeclareLaunchArgument = DeclareLaunchArgument
    actions.OpaqueFunction = OpaqueFunction
    substitutions.LaunchConfiguration = LaunchConfiguration
    ros_actions.Node = Node
    launch.actions, launch.substitutions, launch_ros.actions = actions, substitutions, ros_actions
    return {"launch": launch, "launch.actions": actions, "launch.substitutions": substitutions,
            "launch_ros": launch_ros, "launch_ros.actions": ros_actions}


def _nodes_from_launch_file(mode: str, overrides: dict[str, str], monkeypatch) -> list[dict]:
    for name, module in _fake_launch_modules(overrides).items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(f"{mode}_launch", LAUNCH_DIR / f"{mode}.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    entities = ld.args[0]
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    context = {**declared, **overrides}  # what ros2 launch does with name:=value
    nodes = opaque.kwargs["function"](context)
    return [
        {
            "name": n.kwargs["name"], "package": n.kwargs["package"], "executable": n.kwargs["executable"],
            "parameters": n.kwargs["parameters"][0], "remappings": [list(r) for r in n.kwargs["remappings"]],
        }
        for n in nodes
    ]


def _nodes_from_console(mode: str, overrides: dict[str, str]) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "dex_bringup.cli", "launch", mode, *[f"{k}:={v}" for k, v in overrides.items()], "--print"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [{k: v for k, v in n.items() if k != "module"} for n in json.loads(out.stdout)]


@pytest.mark.parametrize(
    "mode, overrides",
    [("sim", {}), ("sim", {"robot": "ur10e_shadow", "seed": "7", "num_objects": "5"}), ("real", {}),
     ("real", {"robot": "ur10e_shadow"})],
)
def test_launch_files_and_console_start_the_same_graph(mode, overrides, monkeypatch):
    from_launch = _nodes_from_launch_file(mode, overrides, monkeypatch)
    from_console = _nodes_from_console(mode, overrides)
    assert from_launch == from_console
    assert from_launch, "the graph has nodes"
    for node in from_console:
        if "robot" in node["parameters"]:
            assert node["parameters"]["robot"] == overrides.get("robot", "ur5e_leap")


def test_sim_only_nodes_are_not_in_real_mode():
    graph = load_graph()
    sim = {n.name for n in graph.resolve("sim")}
    real = {n.name for n in graph.resolve("real")}
    assert "dex_sim" in sim and "dex_sim" not in real


def test_every_node_has_a_module_with_main_and_a_console_script():
    graph = load_graph()
    for node in graph.nodes:
        package_dir = REPO / "src" / node["package"]
        setup = (package_dir / "setup.py").read_text()
        assert f'{node["executable"]} = {node["module"]}:main' in setup, (node["name"], "console script missing in setup.py")
        module_file = REPO / "src" / node["package"] / Path(*node["module"].split(".")).with_suffix(".py")
        assert module_file.is_file(), module_file
        assert "def main(" in module_file.read_text(), node["module"]


def test_node_command_carries_name_parameters_and_remappings(tmp_path):
    graph = load_graph()
    (node,) = [n for n in graph.resolve("sim", {"seed": "11"}) if n.name == "dex_sim"]
    node = type(node)(node.name, node.package, node.executable, node.module, node.parameters, (("/a", "/b"),))
    cmd = node_command(node, tmp_path, python="python")
    assert cmd[:3] == ["python", "-m", "dex_sim.node"]
    assert cmd[cmd.index("-r") + 1] == "__node:=dex_sim" and "/a:=/b" in cmd
    params = yaml.safe_load(Path(cmd[cmd.index("--params-file") + 1]).read_text())
    assert params["dex_sim"]["ros__parameters"]["seed"] == 11


def test_bad_arguments_are_clear():
    graph = load_graph()
    with pytest.raises(GraphError, match="unknown robot 'ur3_allegro'"):
        graph.resolve("sim", {"robot": "ur3_allegro"})
    with pytest.raises(GraphError, match="unknown argument"):
        graph.resolve("real", {"seed": "1"})
    with pytest.raises(GraphError, match="unknown mode"):
        graph.resolve("hardware")
    with pytest.raises(GraphError, match="name:=value"):
        parse_cli_args(["robot=ur5e_leap"])


def test_malformed_graph(tmp_path):
    bad = tmp_path / "g.yaml"
    bad.write_text("nodes:\n  - {name: a, package: p, executable: e, module: m, modes: [sim]}\n  - {name: a, package: p, executable: e, module: m, modes: [sim]}\n")
    with pytest.raises(GraphError, match="duplicate node name"):
        load_graph(bad)
    bad.write_text("nodes:\n  - {name: a, package: p, executable: e, module: m, modes: [space]}\n")
    with pytest.raises(GraphError, match="unknown mode"):
        load_graph(bad)


def test_proposal_node_gets_its_torch_threads_from_the_graph():
    graph = load_graph()
    for overrides, expected in (({}, 1), ({"proposal_threads": "0"}, 0)):
        (node,) = [n for n in graph.resolve("sim", overrides) if n.name == "dex_proposal"]
        assert node.parameters["torch_threads"] == expected
    for overrides, expected in (({}, 1), ({"proposal_processes": "2"}, 2)):
        (node,) = [n for n in graph.resolve("sim", overrides) if n.name == "dex_proposal"]
        assert node.parameters["processes"] == expected
