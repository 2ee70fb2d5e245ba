"""Robot YAMLs and model files: loading, validation, and errors that name the file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from dex_description import ModelFileError, RobotConfigError, UnknownRobotError
from dex_description.compose import load_robot
from dex_description.config import list_robots, load_robot_config
from dex_description.models import DEFAULT_SOURCE, load_manifest, model_file, source_dir, verify

ROBOTS = ["ur10e_shadow", "ur5e_leap"]


def test_both_combos_are_listed():
    assert set(ROBOTS) <= set(list_robots())


@pytest.mark.parametrize("name", ROBOTS)
def test_config_shapes(name):
    cfg = load_robot_config(name)
    assert cfg.name == name
    assert len(cfg.arm.joints) == 6
    assert cfg.arm.velocity_limits.shape == (6,)
    n, a = len(cfg.hand.joints), len(cfg.hand.actuated)
    assert cfg.hand.servo.kp.shape == (a,)
    assert all(q.shape == (n,) for q in cfg.hand.named_poses.values())
    assert cfg.hand.actuation_matrix().shape == (a, n)


def test_shadow_has_24_joints_20_actuated_and_coupled_distals():
    cfg = load_robot_config("ur10e_shadow").hand
    assert (len(cfg.joints), len(cfg.actuated)) == (24, 20)
    coupled = {a.name: a.joints for a in cfg.actuated if len(a.joints) > 1}
    assert coupled == {f"rh_{f}J0": (f"rh_{f}J2", f"rh_{f}J1") for f in ("FF", "MF", "RF", "LF")}
    u = np.arange(20, dtype=float) * 0.05
    q = cfg.joints_from_actuated(u)
    assert np.allclose(cfg.actuated_from_joints(q), u)  # the sum of an equal split is the command
    ff1, ff2 = cfg.joints.index("rh_FFJ1"), cfg.joints.index("rh_FFJ2")
    assert q[ff1] == q[ff2] == pytest.approx(u[cfg.actuated_names.index("rh_FFJ0")] / 2)


def test_leap_driver_mapping_is_a_permutation_with_offset():
    cfg = load_robot_config("ur5e_leap").hand
    joints = [d.joint for d in cfg.driver.joints]
    assert sorted(joints) == sorted(cfg.joints)
    assert [d.name for d in cfg.driver.joints] == [str(i) for i in range(16)]
    assert all(d.offset == pytest.approx(np.pi) for d in cfg.driver.joints)


def test_unknown_robot_names_the_available_ones():
    with pytest.raises(UnknownRobotError) as exc:
        load_robot_config("ur3_allegro")
    assert "ur3_allegro" in str(exc.value)
    assert "ur5e_leap" in str(exc.value) and "ur10e_shadow" in str(exc.value)


def _edited_copy(tmp_path: Path, name: str, edit) -> Path:
    src = load_robot_config(name).path
    data = yaml.safe_load(src.read_text())
    edit(data)
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    for sub in ("spheres",):  # relative paths in the YAML keep working
        if (src.parent / sub).exists():
            shutil.copytree(src.parent / sub, tmp_path / sub, dirs_exist_ok=True)
    return out


def test_wrong_joint_name_names_file_and_field(tmp_path):
    def edit(d):
        d["hand"]["joints"][3] = "if_dipp"
        d["hand"]["actuated"][3] = "if_dipp"
        d["hand"]["driver"]["joints"][3]["joint"] = "if_dipp"

    path = _edited_copy(tmp_path, "ur5e_leap", edit)
    with pytest.raises(RobotConfigError) as exc:
        load_robot(path)
    err = exc.value
    assert err.path == path and err.field == "hand.joints[3]"
    assert "if_dipp" in str(err) and str(path) in str(err)


def test_wrong_arm_joint_name(tmp_path):
    path = _edited_copy(tmp_path, "ur10e_shadow", lambda d: d["arm"]["joints"].__setitem__(0, "shoulder_pan"))
    with pytest.raises(RobotConfigError) as exc:
        load_robot(path)
    assert exc.value.field == "arm.joints[0]"


def test_coupling_that_the_model_does_not_have(tmp_path):
    def edit(d):  # the model couples FFJ1 + FFJ2 by a tendon; no actuator drives FFJ2 alone
        d["hand"]["actuated"][4] = {"name": "rh_FFJ0", "joints": ["rh_FFJ2"]}

    path = _edited_copy(tmp_path, "ur10e_shadow", edit)
    with pytest.raises(RobotConfigError) as exc:
        load_robot(path)
    assert exc.value.field == "hand.actuated[4]"


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d["arm"].pop("velocity_limits"), "arm.velocity_limits"),
        (lambda d: d["arm"].__setitem__("velocity_limits", [1.0, 2.0]), "arm.velocity_limits"),
        (lambda d: d["hand"]["servo"].__setitem__("kp", -1.0), "hand.servo.kp"),
        (lambda d: d["mount"]["flange_T_root"].__setitem__("quat", [1, 1, 1, 1]), "mount.flange_T_root.quat"),
        (lambda d: d["hand"]["named_poses"].pop("pre_shape"), "hand.named_poses.pre_shape"),
        (lambda d: d["hand"]["driver"]["joints"][0].__setitem__("joint", "nope"), "hand.driver.joints[0].joint"),
        (lambda d: d.__setitem__("name", "other"), "name"),
        (lambda d: d["hand"]["synthesis"].__setitem__("squeeze_scale", 0), "hand.synthesis.squeeze_scale"),
        (lambda d: d["hand"]["synthesis"].__setitem__("stage_iters", {"coarse": -1}), "hand.synthesis.stage_iters"),
        (lambda d: d["hand"]["synthesis"].__setitem__("stage_iters", {"coarse": 1.5}), "hand.synthesis.stage_iters"),
        (lambda d: d["hand"]["synthesis"].__setitem__("stage_iter", {}), "hand.synthesis.stage_iter"),
        (lambda d: d["hand"]["synthesis"].__setitem__("squeeze_force", -1.0), "hand.synthesis.squeeze_force"),
        (lambda d: d["hand"]["synthesis"].__setitem__("squeeze_force", "strong"), "hand.synthesis.squeeze_force"),
    ],
)
def test_malformed_fields(tmp_path, edit, field):
    path = _edited_copy(tmp_path, "ur5e_leap", edit)
    with pytest.raises(RobotConfigError) as exc:
        load_robot_config(path)
    assert exc.value.field == field
    assert str(path) in str(exc.value)


def test_hand_synthesis_settings_are_optional(tmp_path):
    leap = load_robot_config("ur5e_leap").hand.synthesis
    assert leap.squeeze_scale == 0.6 and leap.stage_iters == {"coarse": 120, "fine": 40, "grasp": 40}
    path = _edited_copy(tmp_path, "ur5e_leap", lambda d: d["hand"].pop("synthesis"))
    plain = load_robot_config(path).hand.synthesis
    assert plain.squeeze_scale == 1.0 and plain.stage_iters == {} and plain.squeeze_force == 0.0


def test_named_pose_outside_joint_range(tmp_path):
    path = _edited_copy(tmp_path, "ur5e_leap", lambda d: d["hand"]["named_poses"]["open"].__setitem__(0, 3.0))
    with pytest.raises(RobotConfigError) as exc:
        load_robot(path)
    assert exc.value.field == "hand.named_poses.open" and "if_mcp" in str(exc.value)


def test_not_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(RobotConfigError) as exc:
        load_robot_config(path)
    assert exc.value.path == path


# ---------------------------------------------------------------------------------- model files


def test_models_present_and_verified():
    assert verify(DEFAULT_SOURCE) == []
    manifest = load_manifest(DEFAULT_SOURCE)
    licences = [rel for rel in manifest.files if rel.endswith("LICENSE")]
    assert len(licences) == 4  # each model directory keeps its licence


@pytest.fixture
def model_copy(tmp_path, monkeypatch):
    """A private copy of the fetched models, so tests can break files."""
    dst = tmp_path / "models" / DEFAULT_SOURCE
    shutil.copytree(source_dir(DEFAULT_SOURCE), dst)
    monkeypatch.setenv("DEXGRASP_MODEL_DIR", str(tmp_path / "models"))
    return dst


def test_missing_model_file_is_named(model_copy):
    xml = model_copy / "grippers/leap/assets/right_hand.xml"
    xml.unlink()
    with pytest.raises(ModelFileError) as exc:
        load_robot("ur5e_leap")
    assert exc.value.path == xml and "missing" in str(exc.value) and "fetch-models" in str(exc.value)


def test_corrupt_mesh_is_named(model_copy):
    mesh = model_copy / "manipulators/ur10/assets/assets/wrist3.obj"
    with open(mesh, "r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    with pytest.raises(ModelFileError) as exc:
        load_robot("ur10e_shadow")
    assert exc.value.path == mesh and "corrupt" in str(exc.value)


def test_file_not_in_manifest():
    with pytest.raises(ModelFileError) as exc:
        model_file("grippers/allegro/assets/right_hand.xml")
    assert "manifest" in str(exc.value)
