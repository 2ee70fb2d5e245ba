"""Test-session set-up shared by every test.

ROS isolation: every pytest process (and every xdist worker) takes its own ``ROS_DOMAIN_ID``,
claimed with an exclusive lock file so that concurrent test runs on one machine never share a
domain, and restricts discovery to loopback. Child processes inherit both through ``os.environ``.
This runs at import time, before any test imports rclpy.
"""

from __future__ import annotations

import fcntl
import os
import tempfile

import pytest

_LOCK_HANDLE = None


def _claim_domain_id() -> int:
    global _LOCK_HANDLE
    lock_dir = os.path.join(tempfile.gettempdir(), "dexgrasp-ros-domains")
    os.makedirs(lock_dir, exist_ok=True)
    for domain in range(20, 102):
        handle = open(os.path.join(lock_dir, f"{domain}.lock"), "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _LOCK_HANDLE = handle  # held (locked) until this process exits
        return domain
    raise RuntimeError(f"no free ROS_DOMAIN_ID in 20..101 (lock files in {lock_dir})")


os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ["ROS_DOMAIN_ID"] = str(_claim_domain_id())
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """The ROS domain this test process owns."""
    return int(os.environ["ROS_DOMAIN_ID"])


def require_built_interfaces(kind: str = "action", name: str = "ExecuteGrasp"):
    """Skip the calling test module unless rclpy and the built ``dex_interfaces`` are importable
    (call at module level); returns ``dex_interfaces.<kind>`` (``action`` | ``srv`` | ``msg``),
    which must define ``name`` (a namespace package without the generated code does not)."""
    pytest.importorskip("rclpy")
    try:
        module = pytest.importorskip(f"dex_interfaces.{kind}")
    except pytest.skip.Exception as exc:
        pytest.skip(f"dex_interfaces is not built ({exc})", allow_module_level=True)
    if not hasattr(module, name):
        pytest.skip(f"dex_interfaces.{kind} is a namespace package, not the built interfaces", allow_module_level=True)
    return module
