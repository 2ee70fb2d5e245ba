"""The real-robot graph: `dexgrasp launch real robot:=...` starts the adapters of that robot's hand
and perception on RealSense topics; per-mode remappings; a missing calibration file is reported
with the way to create one; the calibration template is a template."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from dex_bringup.graph import GraphError, load_graph
from dex_description.paths import config_dir

REALSENSE = {  # realsense2_camera 4.x, rs_launch.py defaults (camera_namespace camera, camera_name camera)
    "/camera/color/image_raw": "/camera/camera/color/image_raw",
    "/camera/depth/image_rect_raw": "/camera/camera/aligned_depth_to_color/image_raw",
    "/camera/depth/camera_info": "/camera/camera/aligned_depth_to_color/camera_info",
}


def _print(mode: str, *args: str) -> tuple[dict[str, dict], str]:
    out = subprocess.run([sys.executable, "-m", "dex_bringup.cli", "launch", mode, *args, "--print"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {n["name"]: n for n in json.loads(out.stdout)}, out.stderr


@pytest.mark.parametrize("robot, adapter, absent", [("ur5e_leap", "leap_adapter", "shadow_adapter"),
                                                    ("ur10e_shadow", "shadow_adapter", "leap_adapter")])
def test_real_graph_per_robot(robot, adapter, absent):
    nodes, _ = _print("real", f"robot:={robot}")
    assert "dex_sim" not in nodes and absent not in nodes
    assert {"dex_perception", "dex_proposal", "dex_planning", adapter} <= set(nodes)
    a = nodes[adapter]
    assert (a["package"], a["executable"], a["module"]) == ("dex_bringup", adapter, f"dex_bringup.{adapter}")
    assert a["parameters"] == {"robot": robot}
    assert dict(map(tuple, nodes["dex_perception"]["remappings"])) == REALSENSE
    assert nodes["dex_perception"]["parameters"]["calibration"] == str(config_dir() / "calibration" / "camera.yaml")


def test_sim_graph_has_no_adapters_and_no_camera_remapping():
    for robot in ("ur5e_leap", "ur10e_shadow"):
        nodes, err = _print("sim", f"robot:={robot}")
        assert not {"leap_adapter", "shadow_adapter"} & set(nodes)
        assert nodes["dex_perception"]["remappings"] == []  # the sim publishes the names perception subscribes
        assert "does not exist" not in err  # sim_camera.yaml ships


def test_camera_prefix_argument_moves_the_camera_topics():
    nodes, _ = _print("real", "camera_prefix:=/wrist/d405")
    assert ["/camera/color/image_raw", "/wrist/d405/color/image_raw"] in nodes["dex_perception"]["remappings"]
    with pytest.raises(GraphError, match="unknown argument"):
        load_graph().resolve("sim", {"camera_prefix": "/x"})  # real only


def test_missing_calibration_names_the_file_and_the_fix(tmp_path):
    _, err = _print("real")
    assert f"{config_dir() / 'calibration' / 'camera.yaml'} does not exist" in err
    assert "camera.example.yaml" in err and "easy_handeye2" in err and "calibration:=" in err
    calib = tmp_path / "cam.calib"
    calib.write_text((config_dir() / "calibration" / "sim_camera.yaml").read_text())
    _, err = _print("real", f"calibration:={calib}")
    assert "does not exist" not in err


def test_per_mode_remappings_and_must_exist(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text(yaml.safe_dump({
        "arguments": {"cal": {"default": {"sim": str(tmp_path / "ok.yaml"), "real": str(tmp_path / "missing.yaml")},
                              "must_exist": "make it with ${mode} tools"}},
        "nodes": [{"name": "a", "package": "p", "executable": "e", "module": "m", "modes": ["sim", "real"],
                   "remappings": [["/x", "/y"], {"from": "/c", "to": "/real/c", "modes": ["real"]}]}],
    }))
    (tmp_path / "ok.yaml").write_text("{}")
    graph = load_graph(g)
    (sim,) = graph.resolve("sim")
    (real,) = graph.resolve("real")
    assert sim.remappings == (("/x", "/y"),)
    assert real.remappings == (("/x", "/y"), ("/c", "/real/c"))
    assert graph.missing_files("sim") == []
    (msg,) = graph.missing_files("real")
    assert str(tmp_path / "missing.yaml") in msg and "make it with real tools" in msg
    assert graph.missing_files("real", {"cal": str(tmp_path / "ok.yaml")}) == []


@pytest.mark.parametrize("entry", [{"from": "/a"}, {"from": "/a", "to": "/b", "mode": ["real"]},
                                   {"from": "/a", "to": "/b", "modes": ["space"]}, ["/a"]])
def test_malformed_remapping_entries(tmp_path, entry):
    g = tmp_path / "g.yaml"
    g.write_text(yaml.safe_dump({"nodes": [{"name": "a", "package": "p", "executable": "e", "module": "m",
                                            "modes": ["sim"], "remappings": [entry]}]}))
    with pytest.raises(GraphError, match="remappings|unknown mode"):
        load_graph(g)


def test_calibration_template_is_not_a_calibration_but_has_the_layout():
    from dex_perception.calibration import extrinsics_from_dict, load_extrinsics
    from dex_perception.errors import CalibrationError

    path = config_dir() / "calibration" / "camera.example.yaml"
    with pytest.raises(CalibrationError, match="finite number"):
        load_extrinsics(path)
    doc = yaml.safe_load(path.read_text())
    doc["transform"]["translation"] = {"x": 0.5, "y": 1.0, "z": 1.2}
    doc["transform"]["rotation"] = {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}
    ext = extrinsics_from_dict(doc)  # filled in, it is what the real graph reads
    assert (ext.base_frame, ext.camera_frame) == ("base_link", "camera_color_optical_frame")
    assert ext.camera_position.tolist() == [0.5, 1.0, 1.2]
