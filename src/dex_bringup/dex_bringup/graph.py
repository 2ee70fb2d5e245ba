"""The node graph, described once in ``config/graph/dexgrasp.yaml``, resolved for a mode and arguments.

Both ways of starting dexgrasp read it through this module: the ROS 2 launch files
(``launch/sim.launch.py``, ``launch/real.launch.py``, via :mod:`dex_bringup.launch_common`) and the
pip console command ``dexgrasp launch`` (:mod:`dex_bringup.launcher`). ROS-free.

Example::

    graph = load_graph()
    for node in graph.resolve("sim", {"robot": "ur10e_shadow"}):
        print(node.name, node.module, node.parameters)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dex_description.errors import DescriptionError
from dex_description.paths import config_dir

MODES = ("sim", "real")
_SUBST = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GraphError(DescriptionError):
    """The graph YAML is malformed, or a launch argument is unknown or invalid."""


@dataclass(frozen=True)
class Argument:
    """A launch argument: per-mode defaults (after ``${config_dir}`` substitution happens at resolve time)."""

    name: str
    defaults: dict[str, str]  # mode -> default (unsubstituted)
    description: str
    modes: tuple[str, ...]
    must_exist: str = ""  # non-empty: the value is a file that must exist; this says how to make it


@dataclass(frozen=True)
class NodeSpec:
    """One node of a resolved graph.

    Attributes:
        name: ROS node name.
        package: ROS package (``ros2 launch`` starts ``package``/``executable``).
        executable: Console script of the package.
        module: Python module with ``main(argv)`` (``dexgrasp launch`` runs ``python -m module``).
        parameters: ROS parameters, YAML-typed.
        remappings: ``(from, to)`` topic/service remappings.
    """

    name: str
    package: str
    executable: str
    module: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict:
        return {
            "name": self.name, "package": self.package, "executable": self.executable, "module": self.module,
            "parameters": dict(self.parameters), "remappings": [list(r) for r in self.remappings],
        }


@dataclass(frozen=True)
class Graph:
    """The parsed graph YAML."""

    path: Path
    arguments: dict[str, Argument]
    nodes: tuple[dict, ...]

    def arguments_for(self, mode: str) -> dict[str, Argument]:
        """Arguments that apply in ``mode``."""
        _check_mode(mode)
        return {n: a for n, a in self.arguments.items() if mode in a.modes}

    def defaults_for(self, mode: str) -> dict[str, str]:
        """Argument defaults for ``mode``, substituted (``${config_dir}``)."""
        base = {"mode": mode, "config_dir": str(config_dir())}
        return {n: _substitute(a.defaults[mode], base, self.path, f"arguments.{n}.default") for n, a in self.arguments_for(mode).items()}

    def resolve(self, mode: str, args: dict[str, str] | None = None) -> list[NodeSpec]:
        """The nodes to start in ``mode`` with ``args`` (``name -> string value``) over the defaults.

        Raises:
            GraphError: Unknown mode or argument, unknown robot, or a substitution without a value.
        """
        args = dict(args or {})
        known = self.arguments_for(mode)
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise GraphError(f"unknown argument(s) {', '.join(unknown)} for mode '{mode}'; known: {', '.join(sorted(known))}")
        values = {**self.defaults_for(mode), **{k: str(v) for k, v in args.items()}}
        if "robot" in values:
            from dex_description.config import list_robots

            if values["robot"] not in list_robots():
                raise GraphError(f"unknown robot '{values['robot']}'; available: {', '.join(list_robots())}")
        scope = {**values, "mode": mode, "config_dir": str(config_dir())}
        out = []
        for i, node in enumerate(self.nodes):
            if mode not in node["modes"]:
                continue
            if node.get("robots") and values.get("robot") not in node["robots"]:
                continue
            where = f"nodes[{i}]"
            params = {k: _typed(_substitute(v, scope, self.path, f"{where}.parameters.{k}")) if isinstance(v, str) else v
                      for k, v in node.get("parameters", {}).items()}
            remaps = tuple(
                (_substitute(a, scope, self.path, f"{where}.remappings"), _substitute(b, scope, self.path, f"{where}.remappings"))
                for a, b, modes in map(_remapping, node.get("remappings", [])) if mode in modes
            )
            out.append(NodeSpec(node["name"], node["package"], node["executable"], node["module"], params, remaps))
        return out

    def missing_files(self, mode: str, args: dict[str, str] | None = None) -> list[str]:
        """One message per ``must_exist`` argument whose file is missing in ``mode`` with ``args``:
        the argument, the file, and how to create it (the graph YAML's hint). Empty: all present.

        The launchers print these as errors and still start the graph (the node that reads the
        file then reports it too), so that the rest of the graph can be brought up and checked.
        """
        args = dict(args or {})
        values = {**self.defaults_for(mode), **{k: str(v) for k, v in args.items() if k in self.arguments_for(mode)}}
        scope = {**values, "mode": mode, "config_dir": str(config_dir())}
        out = []
        for name, arg in self.arguments_for(mode).items():
            if arg.must_exist and not Path(values[name]).expanduser().is_file():
                hint = _substitute(arg.must_exist, scope, self.path, f"arguments.{name}.must_exist")
                out.append(f"{name}: file {values[name]} does not exist. {hint}")
        return out


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise GraphError(f"unknown mode '{mode}'; modes: {', '.join(MODES)}")


def _remapping(entry: list | dict) -> tuple[str, str, tuple[str, ...]]:
    """``[from, to]`` (every mode) or ``{from, to, modes}`` -> ``(from, to, modes)`` (validated at load)."""
    if isinstance(entry, dict):
        return str(entry["from"]), str(entry["to"]), tuple(entry.get("modes", MODES))
    return str(entry[0]), str(entry[1]), MODES


def _substitute(text: str, scope: dict[str, str], path: Path, where: str) -> str:
    def repl(m: re.Match) -> str:
        if m.group(1) not in scope:
            raise GraphError(f"{path}: {where}: no value for ${{{m.group(1)}}}")
        return str(scope[m.group(1)])

    return _SUBST.sub(repl, text)


def _typed(text: str) -> Any:
    """A substituted string as YAML would type it ("3" -> 3, "true" -> True); strings stay strings."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float)) else text


def graph_path() -> Path:
    return config_dir() / "graph" / "dexgrasp.yaml"


def load_graph(path: str | Path | None = None) -> Graph:
    """Parse and validate the graph YAML (default: ``config/graph/dexgrasp.yaml``)."""
    path = Path(path) if path is not None else graph_path()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GraphError(f"{path}: cannot read the graph: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise GraphError(f"{path}: must be a mapping with a 'nodes' list")
    arguments = {}
    for name, spec in (data.get("arguments") or {}).items():
        if not isinstance(spec, dict) or "default" not in spec:
            raise GraphError(f"{path}: arguments.{name}: needs a 'default'")
        modes = tuple(spec.get("modes", MODES))
        for m in modes:
            _check_mode(m)
        default = spec["default"]
        defaults = {m: str(default[m]) for m in modes} if isinstance(default, dict) else {m: str(default) for m in modes}
        arguments[name] = Argument(name, defaults, str(spec.get("description", "")), modes, str(spec.get("must_exist", "") or ""))
    names = set()
    for i, node in enumerate(data["nodes"]):
        where = f"{path}: nodes[{i}]"
        if not isinstance(node, dict):
            raise GraphError(f"{where}: must be a mapping")
        for key in ("name", "package", "executable", "module", "modes"):
            if key not in node:
                raise GraphError(f"{where}: missing '{key}'")
        if node["name"] in names:
            raise GraphError(f"{where}: duplicate node name '{node['name']}'")
        names.add(node["name"])
        for m in node["modes"]:
            _check_mode(m)
        if not isinstance(node.get("parameters", {}), dict):
            raise GraphError(f"{where}.parameters: must be a mapping")
        for r in node.get("remappings", []):
            if isinstance(r, dict):
                if set(r) - {"from", "to", "modes"} or not isinstance(r.get("from"), str) or not isinstance(r.get("to"), str):
                    raise GraphError(f"{where}.remappings: entries must be [from, to] or {{from, to, modes}}, got {r}")
                if not isinstance(r.get("modes", []), list):
                    raise GraphError(f"{where}.remappings: modes must be a list, got {r['modes']!r}")
                for m in r.get("modes", []):
                    _check_mode(m)
            elif not (isinstance(r, list) and len(r) == 2):
                raise GraphError(f"{where}.remappings: entries must be [from, to] or {{from, to, modes}}")
    return Graph(path, arguments, tuple(data["nodes"]))


def parse_cli_args(items: list[str]) -> dict[str, str]:
    """``["robot:=ur5e_leap", "seed:=3"]`` -> ``{"robot": "ur5e_leap", "seed": "3"}`` (ros2 launch syntax)."""
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise GraphError(f"arguments are name:=value, got '{item}'")
        out[name] = value
    return out
