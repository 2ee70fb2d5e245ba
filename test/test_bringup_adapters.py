"""Real-hand adapters, translation only (ROS-free): LEAP service/topic readings -> the driver's joint
state; our Shadow topic pair <-> Shadow's finger/wrist controllers and /joint_states."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dex_bringup.adapters import AdapterError, ShadowTranslator, Trajectory, import_interface, leap_state
from dex_description.config import load_robot_config
from dex_description.drivers import hand_command_map, hand_state_map

LEAP_NAMES = [str(i) for i in range(16)]


@pytest.fixture(scope="module")
def leap():
    return hand_state_map(load_robot_config("ur5e_leap").hand)


@pytest.fixture(scope="module")
def shadow_hand():
    return load_robot_config("ur10e_shadow").hand


# ------------------------------------------------------------------------------------------ LEAP


def test_leap_service_response_becomes_the_driver_vector(leap):
    pos = math.pi + np.linspace(-0.2, 0.9, 16)  # LEAP convention: pi = flat
    vel = np.linspace(-1.0, 1.0, 16)
    sample, notes = leap_state(leap, pos.tolist(), vel.tolist(), [100.0] * 16)
    assert list(sample.names) == LEAP_NAMES
    assert np.array_equal(sample.position, pos)  # no conversion: the adapter speaks the driver's convention
    assert np.array_equal(sample.velocity, vel)
    assert sample.effort is None and notes == []  # current [mA] is not a torque unless scaled


def test_leap_effort_from_current_only_when_scaled(leap):
    sample, _ = leap_state(leap, [math.pi] * 16, None, [200.0] * 16, effort_per_ma=0.0005)
    assert np.allclose(sample.effort, 0.1)  # [N m] = 0.0005 N m/mA * 200 mA
    assert sample.velocity is None


def test_leap_named_readings_are_put_in_hardware_order(leap):
    names = list(reversed(LEAP_NAMES))
    pos = np.arange(16.0) + 1.0
    sample, _ = leap_state(leap, pos, pos * 10, None, names=names)
    assert list(sample.names) == LEAP_NAMES
    assert sample.position[0] == 16.0 and sample.position[15] == 1.0  # "0" was last in the input
    assert sample.velocity[0] == 160.0


@pytest.mark.parametrize("position, match", [
    ([math.pi] * 15, "15 values, expected 16"),
    ([math.pi] * 17, "17 values, expected 16"),
    ([math.pi] * 15 + [float("nan")], "non-finite"),
    ([math.pi] * 15 + [float("inf")], "non-finite"),
    (None, "0 values"),
    (["a"] * 16, "must be numbers"),
])
def test_leap_bad_positions_are_rejected(leap, position, match):
    with pytest.raises(AdapterError, match=match):
        leap_state(leap, position)


def test_leap_bad_velocity_or_current_is_left_out_with_a_note(leap):
    sample, notes = leap_state(leap, [math.pi] * 16, [0.0] * 15, [float("nan")] * 16, effort_per_ma=1.0)
    assert sample.velocity is None and sample.effort is None
    assert len(notes) == 2 and "velocity" in notes[0] and "current" in notes[1]


def test_leap_names_must_be_the_drivers(leap):
    with pytest.raises(AdapterError, match="unknown joint name"):
        leap_state(leap, [math.pi] * 16, names=[f"j{i}" for i in range(16)])
    with pytest.raises(AdapterError, match="duplicate"):
        leap_state(leap, [math.pi] * 16, names=["0"] * 16)


def test_import_interface_by_name():
    Trigger = pytest.importorskip("std_srvs.srv").Trigger

    assert import_interface("std_srvs.srv.Trigger") is Trigger
    assert import_interface("std_srvs/srv/Trigger") is Trigger
    with pytest.raises(AdapterError, match="cannot import the interface package 'leap_hand.srv'"):
        import_interface("leap_hand.srv.LeapPosVelEff")
    with pytest.raises(AdapterError, match="has no type 'NoSuchType'"):
        import_interface("std_srvs.srv.NoSuchType")
    with pytest.raises(AdapterError, match="not of the form"):
        import_interface("LeapPosVelEff")


# ------------------------------------------------------------------------------------------ Shadow


def _command(hand, k: int = 2, velocities: bool = True) -> Trajectory:
    names = hand_command_map(hand).names
    rng = np.random.default_rng(3)
    pos = rng.uniform(0.0, 1.0, (k, len(names)))
    pts = [{"positions": pos[i], "time_from_start": 0.5 * (i + 1),
            "velocities": np.full(len(names), 0.2 * (i + 1)) if velocities else []} for i in range(k)]
    return Trajectory.from_points(names, pts)


def test_shadow_command_splits_coupled_distals_and_the_wrist(shadow_hand):
    tr = ShadowTranslator(shadow_hand)
    cmd = _command(shadow_hand)
    out = tr.command_to_shadow(cmd)
    fingers, wrist = out["fingers"], out["wrist"]
    assert wrist.joint_names == ("rh_WRJ2", "rh_WRJ1")
    assert len(fingers.joint_names) == 22 and not any(n.endswith("J0") for n in fingers.joint_names)
    assert not set(fingers.joint_names) & set(wrist.joint_names)
    col = {n: i for i, n in enumerate(cmd.joint_names)}
    fcol = {n: i for i, n in enumerate(fingers.joint_names)}
    for f in ("FF", "MF", "RF", "LF"):
        j0 = cmd.positions[:, col[f"rh_{f}J0"]]
        assert np.allclose(fingers.positions[:, fcol[f"rh_{f}J1"]], j0 / 2)  # equal split, the sum is J0
        assert np.allclose(fingers.positions[:, fcol[f"rh_{f}J2"]], j0 / 2)
        assert np.allclose(fingers.velocities[:, fcol[f"rh_{f}J1"]], cmd.velocities[:, col[f"rh_{f}J0"]] / 2)
    for j in ("rh_FFJ3", "rh_THJ1", "rh_THJ5", "rh_LFJ5"):  # uncoupled joints pass through
        assert np.allclose(fingers.positions[:, fcol[j]], cmd.positions[:, col[j]])
    assert np.allclose(wrist.positions[:, 1], cmd.positions[:, col["rh_WRJ1"]])
    assert np.array_equal(fingers.times, cmd.times) and np.array_equal(wrist.times, cmd.times)
    assert fingers.accelerations is None


def test_shadow_command_without_a_wrist_controller(shadow_hand):
    out = ShadowTranslator(shadow_hand, wrist_joints=()).command_to_shadow(_command(shadow_hand, velocities=False))
    assert set(out) == {"fingers"} and len(out["fingers"].joint_names) == 24
    assert out["fingers"].velocities is None


def test_shadow_command_any_name_order(shadow_hand):
    tr = ShadowTranslator(shadow_hand)
    cmd = _command(shadow_hand)
    perm = np.random.default_rng(0).permutation(len(cmd.joint_names))
    shuffled = Trajectory(tuple(cmd.joint_names[i] for i in perm), cmd.times, cmd.positions[:, perm],
                          cmd.velocities[:, perm])
    a, b = tr.command_to_shadow(cmd), tr.command_to_shadow(shuffled)
    assert np.allclose(a["fingers"].positions, b["fingers"].positions)


def test_shadow_bad_commands_are_rejected(shadow_hand):
    tr = ShadowTranslator(shadow_hand)
    names = list(hand_command_map(shadow_hand).names)
    with pytest.raises(AdapterError, match="partial goals"):
        tr.command_to_shadow(Trajectory.from_points(names[:-1], [{"positions": [0.1] * 19, "time_from_start": 1.0}]))
    with pytest.raises(AdapterError, match="unknown joint name"):
        tr.command_to_shadow(Trajectory.from_points(names + ["rh_FFJ1"], [{"positions": [0.1] * 21, "time_from_start": 1.0}]))
    with pytest.raises(AdapterError, match="non-finite"):
        Trajectory.from_points(names, [{"positions": [0.1] * 19 + [float("nan")], "time_from_start": 1.0}])
    with pytest.raises(AdapterError, match="19 values, expected 20"):
        Trajectory.from_points(names, [{"positions": [0.1] * 19, "time_from_start": 1.0}])
    with pytest.raises(AdapterError, match="no points"):
        Trajectory.from_points(names, [])
    with pytest.raises(AdapterError, match="strictly increasing"):
        Trajectory.from_points(names, [{"positions": [0.1] * 20, "time_from_start": 1.0},
                                       {"positions": [0.1] * 20, "time_from_start": 1.0}])
    with pytest.raises(AdapterError, match="some points only"):
        Trajectory.from_points(names, [{"positions": [0.1] * 20, "time_from_start": 1.0, "velocities": [0.0] * 20},
                                       {"positions": [0.1] * 20, "time_from_start": 2.0}])


def test_shadow_state_from_a_shared_joint_states(shadow_hand):
    tr = ShadowTranslator(shadow_hand)
    joints = list(shadow_hand.joints)
    arm = ["shoulder_pan_joint", "elbow_joint"]
    names = ["shoulder_pan_joint"] + list(reversed(joints)) + ["elbow_joint"]  # Shadow sorts its names; the arm may share the topic
    q = {j: 0.01 * (i + 1) for i, j in enumerate(joints)}
    pos = [9.0] + [q[j] for j in reversed(joints)] + [9.0]
    vel = [0.0] + [2 * q[j] for j in reversed(joints)] + [0.0]
    eff = [0.0] + [-q[j] for j in reversed(joints)] + [0.0]
    sample, notes = tr.state_from_shadow(names, pos, vel, eff)
    assert notes == []
    assert list(sample.names) == list(hand_state_map(shadow_hand).names) == joints
    assert np.allclose(sample.position, [q[j] for j in joints])
    assert np.allclose(sample.velocity, [2 * q[j] for j in joints])
    assert np.allclose(sample.effort, [-q[j] for j in joints])
    assert tr.state_from_shadow(arm, [0.0, 0.0]) == (None, [])  # the arm's own message: not ours


def test_shadow_bad_states(shadow_hand):
    tr = ShadowTranslator(shadow_hand)
    joints = list(shadow_hand.joints)
    with pytest.raises(AdapterError, match="misses hand joint"):
        tr.state_from_shadow(joints[:-1], [0.0] * 23)
    with pytest.raises(AdapterError, match="non-finite"):
        tr.state_from_shadow(joints, [0.0] * 23 + [float("nan")])
    with pytest.raises(AdapterError, match="24 names but 23 positions"):
        tr.state_from_shadow(joints, [0.0] * 23)
    sample, notes = tr.state_from_shadow(joints, [0.0] * 24, [0.0] * 3)  # velocity of the wrong length
    assert sample.velocity is None and notes and "velocity" in notes[0]


def test_shadow_wrist_joints_must_be_hand_joints(shadow_hand):
    with pytest.raises(AdapterError, match="not joints of hand"):
        ShadowTranslator(shadow_hand, wrist_joints=("rh_WRJ3",))


def test_translator_applies_offsets_to_positions_only():
    """The maps' offsets (LEAP: +pi) apply to positions, never to velocities (checked on a hand
    whose maps have offsets, through the same generic translator)."""
    hand = load_robot_config("ur5e_leap").hand
    tr = ShadowTranslator(hand, wrist_joints=())
    names = hand_command_map(hand).names
    out = tr.command_to_shadow(Trajectory.from_points(names, [{
        "positions": [math.pi + 0.25] * 16, "velocities": [0.5] * 16, "time_from_start": 1.0}]))["fingers"]
    assert out.joint_names == tuple(hand.joints)  # model names and order
    assert np.allclose(out.positions, 0.25) and np.allclose(out.velocities, 0.5)
    sample, _ = tr.state_from_shadow(list(hand.joints), [0.25] * 16, [0.5] * 16)
    assert list(sample.names) == LEAP_NAMES
    assert np.allclose(sample.position, math.pi + 0.25) and np.allclose(sample.velocity, 0.5)
