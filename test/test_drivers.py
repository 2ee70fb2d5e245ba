"""Driver mappings: LEAP's hardware order and +pi offset, Shadow's actuated command space, UR names."""

from __future__ import annotations

import numpy as np
import pytest

from dex_description.config import load_robot_config
from dex_description.drivers import DriverMappingError, arm_map, hand_command_map, hand_state_map


def test_leap_roundtrip_order_and_offset():
    hand = load_robot_config("ur5e_leap").hand
    m = hand_state_map(hand)
    q = np.linspace(-0.3, 1.2, len(hand.joints))
    driver = m.to_driver(q, hand.joints)
    assert list(m.names) == [str(i) for i in range(16)]
    # index finger: driver 0 is the MCP side joint (model if_rot), driver 1 the MCP forward (if_mcp)
    assert driver[0] == pytest.approx(q[hand.joints.index("if_rot")] + np.pi)
    assert driver[1] == pytest.approx(q[hand.joints.index("if_mcp")] + np.pi)
    back = m.from_driver(m.names, driver, require_all=True)
    assert np.allclose([back[j] for j in hand.joints], q)
    assert hand_command_map(hand).names == m.names  # LEAP commands and states share the vector


def test_shadow_commands_actuators_states_joints():
    hand = load_robot_config("ur10e_shadow").hand
    cmd, state = hand_command_map(hand), hand_state_map(hand)
    assert len(cmd.names) == 20 and "rh_FFJ0" in cmd.names and "rh_FFJ1" not in cmd.names
    assert len(state.names) == 24 and "rh_FFJ1" in state.names
    q = np.full(24, 0.4)
    u = hand.actuated_from_joints(q)
    driver = cmd.to_driver(u, hand.actuated_names)
    assert driver[list(cmd.names).index("rh_FFJ0")] == pytest.approx(0.8)


def test_arm_identity():
    cfg = load_robot_config("ur10e_shadow")
    m = arm_map(cfg)
    q = np.arange(6) * 0.1
    assert np.allclose(m.to_driver(q, cfg.arm.joints), q)
    assert m.names[0] == "shoulder_pan_joint"


@pytest.mark.parametrize(
    "names, values, match",
    [
        (["shoulder_pan_joint", "bogus"], [0.0, 0.0], "unknown joint"),
        (["shoulder_pan_joint"], [float("nan")], "non-finite"),
        (["shoulder_pan_joint", "shoulder_pan_joint"], [0.0, 0.0], "duplicate"),
        (["shoulder_pan_joint"], [0.0, 1.0], "names but"),
    ],
)
def test_bad_driver_input(names, values, match):
    m = arm_map(load_robot_config("ur5e_leap"))
    with pytest.raises(DriverMappingError, match=match):
        m.from_driver(names, values)


def test_require_all():
    m = arm_map(load_robot_config("ur5e_leap"))
    with pytest.raises(DriverMappingError, match="missing"):
        m.from_driver(["shoulder_pan_joint"], [0.0], require_all=True)
