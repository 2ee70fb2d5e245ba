"""The repository is a colcon workspace: ``colcon build`` builds every package in src/.

Copies ``src/`` and ``config/`` to a temporary workspace and runs ``colcon build`` there against
the venv's ROS 2 wheels (``AMENT_PREFIX_PATH``/``CMAKE_PREFIX_PATH`` = the venv, plus the
wheel include fix-up via ``--cmake-args``) or, when a system ROS is sourced, against that.
Skips when colcon, cmake or the ament CMake packages are absent. ``colcon`` is not a project
dependency; ``pip install colcon-common-extensions`` into the venv enables this test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
INTERFACES = "dex_interfaces"
FIX_INCLUDES_REL = Path("src") / INTERFACES / "cmake" / "fix_wheel_includes.cmake"
BUILD_TIMEOUT_S = 600.0  # [s] whole colcon build (about 30 s on 2 cores)
IMPORT_TIMEOUT_S = 60.0  # [s]
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "install",
                                     "log", ".pytest_cache")


class WorkspaceError(RuntimeError):
    """The source tree does not look like the expected colcon workspace."""


def colcon_command() -> list[str] | None:
    """How to run colcon: the script next to this interpreter, else on PATH; None if absent."""
    if importlib.util.find_spec("colcon_core") is None and shutil.which("colcon") is None:
        return None
    beside = Path(sys.executable).parent / "colcon"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("colcon")
    return [found] if found else None


def ament_prefixes() -> tuple[list[str], bool]:
    """Prefixes holding ament_cmake and whether they come from a sourced system ROS.

    Returns:
        (prefixes, system_ros); empty prefixes if ament_cmake is nowhere to be found.
    """
    sourced = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if any((Path(p) / "share" / "ament_cmake").is_dir() for p in sourced):
        return sourced, True
    if (Path(sys.prefix) / "share" / "ament_cmake").is_dir():
        return [sys.prefix], False
    return [], False


def package_build_types(src: Path) -> dict[str, str]:
    """``{package name: build_type}`` for every package.xml below ``src``.

    Raises:
        WorkspaceError: a package.xml has no name.
    """
    packages: dict[str, str] = {}
    for manifest in sorted(src.glob("*/package.xml")):
        root = ET.parse(manifest).getroot()
        name = root.findtext("name")
        if not name:
            raise WorkspaceError(f"{manifest} has no <name>")
        packages[name.strip()] = (root.findtext("export/build_type") or "").strip()
    return packages


def console_scripts(setup_py: Path) -> list[str]:
    """Console-script names declared as ``"name = module:function"`` in a setup.py."""
    return re.findall(r"[\"']\s*([\w.-]+)\s*=\s*[\w.]+\s*:\s*\w+\s*[\"']", setup_py.read_text())


def test_colcon_build_workspace(tmp_path: Path) -> None:
    """colcon builds dex_interfaces (ament_cmake) and every ament_python package into install/."""
    colcon = colcon_command()
    if colcon is None:
        pytest.skip("colcon not installed (pip install colcon-common-extensions)")
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    prefixes, system_ros = ament_prefixes()
    if not prefixes:
        pytest.skip("no ament_cmake found (neither a sourced ROS nor the ROS wheels in this venv)")

    ws = tmp_path / "ws"
    shutil.copytree(REPO_ROOT / "src", ws / "src", ignore=COPY_IGNORE)
    if (REPO_ROOT / "config").is_dir():
        shutil.copytree(REPO_ROOT / "config", ws / "config", ignore=COPY_IGNORE)
    packages = package_build_types(ws / "src")
    assert packages.get(INTERFACES) == "ament_cmake", packages
    python_packages = sorted(n for n, t in packages.items() if t == "ament_python")
    assert python_packages, f"no ament_python packages in src/: {packages}"

    env = dict(os.environ)
    cmake_args = ["-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
    if not system_ros:
        import numpy  # the rosidl Python generator needs it anyway

        env["AMENT_PREFIX_PATH"] = os.pathsep.join(prefixes)
        env["CMAKE_PREFIX_PATH"] = os.pathsep.join(prefixes)
        cmake_args += [f"-DCMAKE_PROJECT_INCLUDE={ws / FIX_INCLUDES_REL}",
                       f"-DDEX_PYTHON_INCLUDE_DIR={sysconfig.get_paths()['include']}",
                       f"-DDEX_NUMPY_INCLUDE_DIR={numpy.get_include()}"]
    cmd = colcon + ["--log-base", str(ws / "log"), "build", "--base-paths", str(ws / "src"),
                    "--build-base", str(ws / "build"), "--install-base", str(ws / "install"),
                    "--parallel-workers", "2", "--event-handlers", "console_direct-",
                    "--cmake-args", *cmake_args]
    try:
        result = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"colcon build did not finish in {BUILD_TIMEOUT_S:.0f} s: {exc}")
    assert result.returncode == 0, \
        f"colcon build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"

    install = ws / "install"
    py_version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    py_dir = Path("lib") / py_version / "site-packages"
    # the interface package: definitions, generated Python, type support libraries
    share = install / INTERFACES / "share" / INTERFACES
    assert (share / "package.xml").is_file()
    for definition in ("msg/HandState.msg", "msg/GraspProposal.msg", "msg/GraspProposalArray.msg",
                       "msg/StageTiming.msg", "action/ExecuteGrasp.action"):
        assert (share / definition).is_file(), definition
    generated = install / INTERFACES / py_dir / INTERFACES / "msg" / "_grasp_proposal_array.py"
    assert generated.is_file()
    assert list((install / INTERFACES / "lib").glob(f"lib{INTERFACES}__rosidl_typesupport_c.so"))
    # every ament_python package: ament index marker, manifest, modules, console scripts
    for name in python_packages:
        prefix = install / name
        marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / name
        assert marker.is_file(), name
        assert (prefix / "share" / name / "package.xml").is_file(), name
        if (ws / "src" / name / name / "__init__.py").is_file():
            assert (prefix / py_dir / name / "__init__.py").is_file(), name
        for script in console_scripts(ws / "src" / name / "setup.py"):
            assert (prefix / "lib" / name / script).is_file(), f"{name}: console script {script}"

    # the sourced install space imports the interfaces from install/, not from the venv or src/
    probe = ("import importlib.util, json\n"
             "from dex_interfaces.msg import GraspProposalArray\n"
             "from dex_interfaces.action import ExecuteGrasp\n"
             f"names = {python_packages!r} + ['dex_interfaces']\n"
             "specs = {n: importlib.util.find_spec(n) for n in names}\n"
             "print(json.dumps({n: (s.origin if s else None) for n, s in specs.items()}))\n")
    shell = f'source "{install / "local_setup.bash"}" && exec "{sys.executable}" -c "$DEX_PROBE"'
    probe_result = subprocess.run(["bash", "-c", shell], cwd=tmp_path,
                                  env={**env, "DEX_PROBE": probe},
                                  capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S,
                                  check=False)
    assert probe_result.returncode == 0, probe_result.stderr
    origins = json.loads(probe_result.stdout.strip().splitlines()[-1])
    assert Path(origins[INTERFACES]).is_relative_to(install / INTERFACES), origins
    for name in python_packages:
        if (ws / "src" / name / name / "__init__.py").is_file():
            assert origins[name] and Path(origins[name]).is_relative_to(install / name), origins

    # config is found in the install space without AMENT_PREFIX_PATH (nothing sourced)
    find_config = ("import json\n"
                   "from dex_description.paths import config_dir\n"
                   "from dex_description.config import list_robots, load_robot_config\n"
                   "cfg = load_robot_config('ur5e_leap')\n"
                   "print(json.dumps({'config': str(config_dir()), 'robots': list_robots(),\n"
                   "                  'spheres': str(cfg.hand.spheres), 'exists': cfg.hand.spheres.is_file()}))\n")
    bare_env = {k: v for k, v in env.items() if k not in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH")}
    bare_env["PYTHONPATH"] = str(install / "dex_description" / py_dir)
    found = subprocess.run([sys.executable, "-c", find_config], cwd=tmp_path, env=bare_env,
                           capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S, check=False)
    assert found.returncode == 0, found.stderr
    info = json.loads(found.stdout.strip().splitlines()[-1])
    assert Path(info["config"]).is_relative_to(install / "dex_description" / "share" / "dex_description"), info
    assert {"ur10e_shadow", "ur5e_leap"} <= set(info["robots"]) and info["exists"], info
