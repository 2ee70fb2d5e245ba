#!/usr/bin/env python3
"""Build and install dex_interfaces (rosidl .msg/.action) into a Python venv with the ROS 2 wheels.

Usage (inside the activated venv that holds the ``ros-*`` wheels, from anywhere)::

    python src/dex_interfaces/build_in_venv.py [--prefix P] [--build-dir D] [--force] [--jobs N]

What it does: configure with CMake (``AMENT_PREFIX_PATH``/``CMAKE_PREFIX_PATH``/
``CMAKE_INSTALL_PREFIX`` = the prefix, ``Python3_EXECUTABLE`` = this interpreter,
``BUILD_TESTING=OFF`` and ``cmake/fix_wheel_includes.cmake`` as ``CMAKE_PROJECT_INCLUDE``), build,
install, then verify in a fresh interpreter that ``dex_interfaces.msg``/``.action`` import from the
prefix. A stamp in the prefix (hash of the interface definitions, build files, this script and the
Python version) makes a repeated call a quick no-op; ``--force`` rebuilds from scratch.

It refuses to run against a sourced system ROS (``/opt/ros`` in the ament/cmake/python paths) and,
unless ``--prefix`` is given, outside a venv. Standard library only.

Exit status: 0 built or already up to date, 1 build or verification failed, 2 refused.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Iterator, Sequence

PACKAGE = "dex_interfaces"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent
DEFAULT_BUILD_DIR = REPO_ROOT / "build" / PACKAGE
FIX_INCLUDES = PACKAGE_DIR / "cmake" / "fix_wheel_includes.cmake"
STAMP_RELPATH = Path("share") / PACKAGE / "build_in_venv.stamp"
LOG_NAME = "build_in_venv.log"
LOG_TAIL_LINES = 60
SYSTEM_ROS_MARKER = "/opt/ros"
ENV_VARS_CHECKED = ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "PYTHONPATH", "LD_LIBRARY_PATH")

VERIFY_CODE = """
import importlib.util, json
from dex_interfaces.msg import GraspProposalArray, GraspProposal, HandState, StageTiming
from dex_interfaces.action import ExecuteGrasp
spec = importlib.util.find_spec("dex_interfaces")
print(json.dumps({"origin": spec.origin,
                  "locations": list(spec.submodule_search_locations or [])}))
"""


class BuildError(RuntimeError):
    """A configure/build/install/verify step failed."""


class RefusedError(RuntimeError):
    """The environment is unsuitable (no venv, sourced system ROS, foreign build dir)."""


def log(message: str) -> None:
    """Print one progress line (flushed, so it interleaves correctly with child output)."""
    print(f"[{PACKAGE}] {message}", flush=True)


@contextlib.contextmanager
def timed(step: str) -> Iterator[None]:
    """Log the start of ``step`` and, on success, its elapsed wall time [s]."""
    log(f"{step} ...")
    start = time.monotonic()
    yield
    log(f"{step} done in {time.monotonic() - start:.2f} s")


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` so that concurrent builds serialise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log(f"waiting for another build holding {path} ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def in_venv() -> bool:
    """True if this interpreter runs inside a venv/virtualenv."""
    return sys.prefix != getattr(sys, "base_prefix", sys.prefix)


def check_environment() -> None:
    """Refuse to mix with a sourced system ROS.

    Raises:
        RefusedError: one of the search-path variables names ``/opt/ros``.
    """
    for var in ENV_VARS_CHECKED:
        value = os.environ.get(var, "")
        if SYSTEM_ROS_MARKER in value:
            raise RefusedError(
                f"{var} contains {SYSTEM_ROS_MARKER} ({value!r}): a system ROS is sourced. "
                "Building into a pip venv must not mix with it; use a fresh shell without "
                "'source /opt/ros/.../setup.bash' (or build with colcon against the system ROS).")


def source_files() -> list[Path]:
    """Every file whose content determines the build output (sorted, absolute)."""
    files = [PACKAGE_DIR / "CMakeLists.txt", PACKAGE_DIR / "package.xml", FIX_INCLUDES,
             Path(__file__).resolve()]
    for sub, pattern in (("msg", "*.msg"), ("srv", "*.srv"), ("action", "*.action")):
        files.extend(sorted((PACKAGE_DIR / sub).glob(pattern)))
    return files


def compute_stamp(prefix: Path) -> str:
    """Hash [hex sha256] of the build inputs, the interpreter version and the prefix."""
    digest = hashlib.sha256()
    digest.update(f"python={sys.version}\nexecutable={sys.executable}\nprefix={prefix}\n".encode())
    for path in source_files():
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def python_include_dirs() -> tuple[str, str]:
    """This interpreter's C include dir and numpy's include dir (for the wheel fix-up).

    Raises:
        BuildError: numpy is not importable (the rosidl Python generator needs it).
    """
    python_include = sysconfig.get_paths()["include"]
    try:
        import numpy  # noqa: PLC0415 -- only needed here
    except ImportError as exc:
        raise BuildError(f"numpy is required to build rosidl Python bindings: {exc}") from exc
    return python_include, numpy.get_include()


def prefix_search_path(prefix: Path) -> list[str]:
    """Prefixes CMake/ament search: the install prefix, then this venv if different."""
    paths = [str(prefix)]
    if Path(sys.prefix).resolve() != prefix.resolve():
        paths.append(sys.prefix)
    return paths


def build_env(prefix: Path) -> dict[str, str]:
    """Environment for cmake: only the venv (and prefix) on the ament and cmake search paths."""
    env = dict(os.environ)
    search = os.pathsep.join(prefix_search_path(prefix))
    env["AMENT_PREFIX_PATH"] = search
    env["CMAKE_PREFIX_PATH"] = search
    return env


def run_step(cmd: Sequence[str], env: dict[str, str], log_path: Path, cwd: Path) -> None:
    """Run one command, appending its output to ``log_path``.

    Raises:
        BuildError: the command exited non-zero (its log tail has been printed).
    """
    with open(log_path, "a", encoding="utf-8") as log_file:
        log_file.write(f"\n$ {' '.join(cmd)}\n")
        log_file.flush()
        result = subprocess.run(list(cmd), cwd=cwd, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        print_log_tail(log_path)
        raise BuildError(f"'{' '.join(cmd[:3])} ...' failed with exit code {result.returncode} "
                         f"(full log: {log_path})")


def print_log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> None:
    """Print the last ``lines`` lines of the build log to stderr."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    print(f"----- last {min(lines, len(text))} lines of {log_path} -----", file=sys.stderr)
    for line in text[-lines:]:
        print(line, file=sys.stderr)
    print("-----", file=sys.stderr, flush=True)


def read_cmake_cache(build_dir: Path) -> dict[str, str]:
    """Selected ``KEY:TYPE=VALUE`` entries of ``CMakeCache.txt`` (empty if there is none)."""
    cache = build_dir / "CMakeCache.txt"
    entries: dict[str, str] = {}
    if not cache.is_file():
        return entries
    for line in cache.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("#", "//")) or "=" not in line or ":" not in line.split("=", 1)[0]:
            continue
        key_type, value = line.split("=", 1)
        entries[key_type.split(":", 1)[0]] = value
    return entries


def prepare_build_dir(build_dir: Path, prefix: Path, force: bool) -> None:
    """Create ``build_dir``; wipe it on ``force`` or if it was configured differently.

    Raises:
        RefusedError: the directory exists, is not empty and is not a CMake build dir.
    """
    if build_dir.exists():
        cache = read_cmake_cache(build_dir)
        if not cache and any(build_dir.iterdir()):
            raise RefusedError(f"build dir {build_dir} exists, is not empty and has no "
                               "CMakeCache.txt; refusing to use or delete it")
        stale = cache and (
            Path(cache.get("CMAKE_HOME_DIRECTORY", "")) != PACKAGE_DIR
            or Path(cache.get("CMAKE_INSTALL_PREFIX", "")) != prefix
            or cache.get("Python3_EXECUTABLE", "") != sys.executable)
        if force or stale:
            log(f"removing {'stale ' if stale and not force else ''}build dir {build_dir}")
            shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)


def verify_env(prefix: Path) -> dict[str, str]:
    """Environment for the verification interpreter.

    For the venv itself nothing is needed (the ROS wheels' start-up hook puts ``<venv>/lib`` on
    the library path); for another prefix its site-packages and lib dir are prepended.
    """
    env = dict(os.environ)
    env.pop("PYTHONSAFEPATH", None)
    if Path(sys.prefix).resolve() != prefix.resolve():
        purelib = sysconfig.get_path("purelib", vars={"base": str(prefix),
                                                      "platbase": str(prefix)})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (purelib, env.get("PYTHONPATH")) if p)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(prefix / "lib"), env.get("LD_LIBRARY_PATH")) if p)
    return env


def verify_install(prefix: Path) -> str:
    """Import the built messages in a fresh interpreter; return the package's ``__init__`` path.

    Runs from ``src/`` (where a ``dex_interfaces`` source folder would be a namespace-package
    candidate) to prove the source tree does not shadow the installed package.

    Raises:
        BuildError: import failed, or the package resolved outside ``prefix`` / as a namespace.
    """
    result = subprocess.run([sys.executable, "-c", VERIFY_CODE], cwd=PACKAGE_DIR.parent,
                            env=verify_env(prefix), capture_output=True, text=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise BuildError(f"importing the built {PACKAGE} failed:\n{result.stderr.strip()}")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    origin = info.get("origin")
    if not origin or origin == "namespace":
        raise BuildError(f"{PACKAGE} resolved as a namespace package ({info['locations']}); "
                         "the built package is not on sys.path")
    real_origin = os.path.realpath(origin)
    real_prefix = os.path.realpath(prefix)
    if not real_origin.startswith(real_prefix + os.sep):
        raise BuildError(f"{PACKAGE} imports from {origin}, not from under the prefix {prefix}")
    return origin


def is_up_to_date(prefix: Path, stamp: str) -> bool:
    """True if the stamp in ``prefix`` matches and the installed package imports from there."""
    stamp_path = prefix / STAMP_RELPATH
    try:
        if stamp_path.read_text(encoding="utf-8").strip() != stamp:
            return False
    except OSError:
        return False
    try:
        verify_install(prefix)
    except (BuildError, subprocess.TimeoutExpired, ValueError) as exc:
        log(f"stamp matches but the installed package does not import ({exc}); rebuilding")
        return False
    return True


def build(prefix: Path, build_dir: Path, force: bool, jobs: int) -> None:
    """Configure, build, install and verify; skip if already up to date.

    Raises:
        BuildError: a step failed.
        RefusedError: the build dir cannot be used.
    """
    stamp = compute_stamp(prefix)
    if not force and is_up_to_date(prefix, stamp):
        log(f"up to date in {prefix} (stamp {stamp[:12]}); nothing to do (--force rebuilds)")
        return
    prepare_build_dir(build_dir, prefix, force)
    log_path = build_dir / LOG_NAME
    log_path.write_text("", encoding="utf-8")
    env = build_env(prefix)
    python_include, numpy_include = python_include_dirs()
    search = ";".join(prefix_search_path(prefix))
    configure = [
        "cmake", "-S", str(PACKAGE_DIR), "-B", str(build_dir),
        f"-DCMAKE_PREFIX_PATH={search}",
        f"-DCMAKE_INSTALL_PREFIX={prefix}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
        f"-DCMAKE_PROJECT_INCLUDE={FIX_INCLUDES}",
        f"-DDEX_PYTHON_INCLUDE_DIR={python_include}",
        f"-DDEX_NUMPY_INCLUDE_DIR={numpy_include}",
    ]
    log(f"prefix {prefix}; build dir {build_dir}; log {log_path}")
    with timed("configure"):
        run_step(configure, env, log_path, build_dir)
    with timed(f"build (-j{jobs})"):
        run_step(["cmake", "--build", str(build_dir), f"-j{jobs}"], env, log_path, build_dir)
    with timed("install"):
        run_step(["cmake", "--install", str(build_dir)], env, log_path, build_dir)
    with timed("verify import"):
        origin = verify_install(prefix)
    log(f"{PACKAGE} imports from {origin}")
    stamp_path = prefix / STAMP_RELPATH
    stamp_path.parent.mkdir(parents=True, exist_ok=True)
    stamp_path.write_text(stamp + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, default=None,
                        help="install prefix (default: the active venv, sys.prefix)")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR,
                        help=f"CMake build dir (default: {DEFAULT_BUILD_DIR})")
    parser.add_argument("--force", action="store_true",
                        help="ignore the stamp and rebuild from an empty build dir")
    parser.add_argument("--jobs", "-j", type=int, default=2, help="parallel build jobs (default 2)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    start = time.monotonic()
    try:
        check_environment()
        if args.prefix is None:
            if not in_venv():
                raise RefusedError(
                    f"{sys.executable} is not running in a venv (sys.prefix == sys.base_prefix "
                    f"== {sys.prefix}); activate the venv that has the ROS 2 wheels, or pass "
                    "--prefix explicitly")
            prefix = Path(sys.prefix)
        else:
            prefix = args.prefix.expanduser().absolute()
        if shutil.which("cmake") is None:
            raise RefusedError("cmake not found on PATH (apt-get install cmake g++ python3-dev)")
        build_dir = args.build_dir.expanduser().absolute()
        with exclusive_lock(build_dir.parent / f".{build_dir.name}.lock"):
            build(prefix, build_dir, args.force, max(1, args.jobs))
    except RefusedError as exc:
        print(f"[{PACKAGE}] refused: {exc}", file=sys.stderr)
        return 2
    except (BuildError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"[{PACKAGE}] FAILED: {exc}", file=sys.stderr)
        return 1
    log(f"total {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
