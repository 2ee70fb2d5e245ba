"""The orchestrator's ROS-free parts (dex_bringup.orchestration): parameters, reach retiming, hand
target sampling, obstacle filtering, the verify decision; and the trajectory-time encoding the
orchestrator relies on (dex_planning.msgs)."""

from __future__ import annotations

import numpy as np
import pytest

from dex_bringup.orchestration import (
    OrchestratorSettings,
    SettingsError,
    hand_shape_error,
    obstacle_points,
    parameter_defaults,
    reach_stretch,
    retime,
    sample_at,
    settings_from_parameters,
    table_height,
    tracking_error,
    verify_verdict,
)


def test_defaults_round_trip_and_feed_the_episode_and_the_executor():
    s = settings_from_parameters({})
    assert s == OrchestratorSettings()
    params = parameter_defaults()
    assert params["timeout_propose_s"] == s.timeouts["propose"] and "timeouts" not in params
    s = settings_from_parameters({"speed_scale": 1, "lift_height": 0.1, "require_confirm": True, "timeout_propose_s": 60,
                                  "workspace_min": [-1, -1, 0], "workspace_max": [1, 1, 1]})
    assert s.speed_scale == 1.0 and isinstance(s.speed_scale, float)
    ep = s.episode_config()
    assert ep.timeouts["propose"] == 60.0 and ep.lift_height == 0.1 and ep.require_confirm
    ex = s.executor_config()
    assert ex.speed_scale == 1.0 and ex.workspace_min == (-1.0, -1.0, 0.0) and ex.workspace_max == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("name, value, match", [
    ("speed_scale", 1.5, "speed_scale"),
    ("speed_scale", 0.0, "speed_scale"),
    ("require_confirm", "yes", "require_confirm"),
    ("top_k", 2.5, "top_k"),
    ("workspace_min", [0, 0], "workspace_min"),
    ("workspace_min", [2, 0, 0], "workspace_min"),
    ("timeout_reach_s", -1.0, "timeout_reach_s"),
    ("hold_s", float("nan"), "hold_s"),
    ("no_such_parameter", 1, "no_such_parameter"),
])
def test_bad_parameters_are_named(name, value, match):
    with pytest.raises(SettingsError, match=match):
        settings_from_parameters({name: value})


def test_reach_is_slowed_to_the_speed_scale_along_the_same_path():
    vlim = np.array([2.0, 2.0, 3.0])
    t = np.linspace(0.0, 1.0, 11)
    q = np.stack([np.sin(t), 2 * t, t**2], axis=1)
    qd = np.gradient(q, t, axis=0)  # peak |qd| / vlim = 2 / 2 = 1
    assert reach_stretch(qd, vlim, 1.0) == pytest.approx(1.0)
    stretch = reach_stretch(qd, vlim, 0.5)
    assert stretch == pytest.approx(2.0)
    t2, qd2, qdd2 = retime(t, qd, np.ones_like(qd), stretch)
    assert np.allclose(t2, 2 * t) and np.allclose(qd2, qd / 2) and np.allclose(qdd2, 0.25)
    assert (np.abs(qd2) / vlim).max() <= 0.5 + 1e-12
    assert reach_stretch(0.1 * qd, vlim, 0.5) == 1.0  # already slow enough: unchanged
    assert retime(t, None, None, 3.0)[1:] == (None, None)


def test_hand_targets_are_interpolated_and_held_at_the_ends():
    t = np.array([0.0, 1.0, 2.0])
    v = np.array([[0.0, 10.0], [1.0, 10.0], [3.0, 0.0]])
    assert np.allclose(sample_at(0.5, t, v), [0.5, 10.0])
    assert np.allclose(sample_at(1.5, t, v), [2.0, 5.0])
    assert np.allclose(sample_at(-1.0, t, v), v[0]) and np.allclose(sample_at(9.0, t, v), v[-1])
    assert np.allclose(sample_at(3.0, t[:1], v[:1]), v[0])
    assert tracking_error([0.0, 1.0], [0.1, 0.7]) == pytest.approx(0.3)


def test_obstacles_are_the_scene_above_the_table():
    table = np.array([[0.0, 0.0, 0.002], [1.0, 0.0, -0.002], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    z = table_height(table)
    assert z == pytest.approx(0.0)
    scene = np.array([[0.5, 0.5, 0.004], [0.5, 0.5, 0.05], [0.2, 0.3, 0.2], [np.nan, 0.0, 0.3]])
    assert np.allclose(obstacle_points(scene, z, 0.01), scene[1:3])
    assert len(obstacle_points(scene, None, 0.01)) == 3  # table unknown: every finite point
    assert table_height(np.zeros((0, 3))) is None


def test_hand_shape_error_compares_coupled_joints_by_their_sum():
    from dex_description.config import load_robot_config

    shadow = load_robot_config("ur10e_shadow").hand
    target = np.asarray(shadow.named_poses["pre_shape"], dtype=np.float64)
    j1, j2 = shadow.joints.index("rh_RFJ1"), shadow.joints.index("rh_RFJ2")
    split = target.copy()
    split[j1] += 0.24  # the tendon's sum on target, split unevenly: the actuator is where it was sent
    split[j2] -= 0.24
    assert hand_shape_error(shadow, split, target)[0] == pytest.approx(0.0, abs=1e-12)
    short = target.copy()
    short[j1] -= 0.2
    short[shadow.joints.index("rh_WRJ1")] += 0.05
    assert hand_shape_error(shadow, short, target) == (pytest.approx(0.2), "rh_RFJ0")
    leap = load_robot_config("ur5e_leap").hand  # uncoupled: the joint errors themselves
    q = np.asarray(leap.named_poses["pre_shape"], dtype=np.float64)
    off = q.copy()
    off[3] += 0.1
    assert hand_shape_error(leap, off, q) == (pytest.approx(0.1), leap.joints[3])


def test_verify_decision():
    ok, why = verify_verdict("ok", "1 object(s)", True, 0.3)
    assert ok is False and "still where it stood" in why
    ok, why = verify_verdict("bad_prompt", "no object within 5 cm", True, 0.3)
    assert ok is True and "held" in why
    ok, why = verify_verdict("nothing_in_workspace", "", False, 0.001)
    assert ok is False and "dropped" in why
    ok, why = verify_verdict("no_table", "no plane", True, 0.3)
    assert ok is None and "could not look" in why and "no_table" in why
    # seen in the hand: held, even with the fingers near the squeeze target (a light object)
    ok, why = verify_verdict("bad_prompt", "no object within 5 cm", False, 0.01, held=10, min_held=10)
    assert ok is True and "seen in the hand (10 points" in why
    # not seen, fingers held apart: hidden behind the hand
    ok, why = verify_verdict("bad_prompt", "no object within 5 cm", True, 0.3, held=3, min_held=10)
    assert ok is True and "3 points seen" in why and "hidden" in why
    # not seen and the fingers closed: dropped
    ok, why = verify_verdict("bad_prompt", "no object within 5 cm", False, 0.01, held=9, min_held=10)
    assert ok is False and "dropped" in why and "9 points" in why
    # the points never outweigh an object still where it stood
    assert verify_verdict("ok", "1 object(s)", True, 0.3, held=500, min_held=10)[0] is False
    # min_held <= 0: the fingers alone decide
    assert verify_verdict("bad_prompt", "", False, 0.01, held=500, min_held=0)[0] is False


def test_trajectory_times_never_wrap_to_zero():
    """A sample time a hair under a whole second (0.02 s x 50 in floating point) is encoded as
    1 s, not as 0 s (which the controllers reject as non-increasing)."""
    pytest.importorskip("builtin_interfaces")
    from dex_planning.msgs import _duration

    for t in (0.9999999999, 1.0, 2.9999999997, 0.98, 0.0):
        d = _duration(t)
        assert 0 <= d.nanosec < 1_000_000_000
        assert d.sec + 1e-9 * d.nanosec == pytest.approx(t, abs=1e-9)
    ts = np.arange(200) * 0.02
    enc = [(_duration(x).sec, _duration(x).nanosec) for x in ts]
    assert enc == sorted(enc) and len(set(enc)) == len(enc)


def test_self_filter_removes_the_robot_and_keeps_the_rest():
    """The camera sees the Shadow hand's fingertips at the home pose; those points must not become
    obstacles (the planner would find its start state in collision)."""
    from dex_bringup.orchestration import SelfFilter
    from dex_description.compose import load_robot

    robot = load_robot("ur10e_shadow", check=False)
    margin = 0.03
    sf = SelfFilter(robot, margin)
    arm_q = np.asarray(robot.cfg.arm.named_poses["home"], dtype=float)
    hand_q = np.zeros(len(robot.cfg.hand.joints))
    centres, radii = sf.spheres(arm_q, hand_q)
    assert len(centres) == len(radii) > 10
    top = int(np.argmax(centres[:, 2] + radii))
    up = np.array([0.0, 0.0, 1.0])
    near = centres[top] + (radii[top] + 0.5 * margin) * up  # just outside the sphere, inside the margin
    clear = centres[top] + (radii[top] + 2.0 * margin) * up  # above the whole robot
    table_object = np.array([0.0, 0.6, 0.05])
    kept = sf(np.vstack([centres, near, clear, table_object]), arm_q, hand_q)
    assert len(kept) == 2 and np.allclose(kept, [clear, table_object])
    # the spheres follow the joints: the same points are kept once the arm has turned away
    turned = arm_q + np.array([np.pi / 2, 0, 0, 0, 0, 0])
    assert len(sf(centres, turned, hand_q)) > 0
    assert sf(np.zeros((0, 3)), arm_q, hand_q).shape == (0, 3)


def test_held_object_points_count_what_is_neither_table_nor_robot_near_the_expected_place():
    from dex_bringup.orchestration import SelfFilter, held_object_points
    from dex_description.compose import load_robot

    robot = load_robot("ur5e_leap", check=False)
    sf = SelfFilter(robot, 0.03)
    arm_q = np.asarray(robot.cfg.arm.named_poses["home"], dtype=float)
    hand_q = np.zeros(len(robot.cfg.hand.joints))
    centres, radii = sf.spheres(arm_q, hand_q)
    palm = centres[int(np.argmax(radii))]  # a hand or wrist sphere: the robot's own surface
    rng = np.random.default_rng(0)
    robot_pts = centres + 0.5 * radii[:, None] * rng.uniform(-1, 1, centres.shape) / np.sqrt(3)
    obj = palm + np.array([0.0, 0.0, -0.15]) + rng.normal(0, 0.01, (40, 3))  # an object below the hand
    table = np.column_stack([rng.uniform(-0.3, 0.3, 100), rng.uniform(0.3, 0.9, 100), np.zeros(100)])
    scene = np.vstack([robot_pts, obj, table])
    expected = obj.mean(0)
    n = held_object_points(scene, 0.0, sf, arm_q, hand_q, expected, radius=0.1, margin=0.01)
    assert n == len(obj) - int(np.sum(obj[:, 2] < 0.01))  # the object's points, not the robot's or the table's
    # nothing there: only the robot near the expected place
    assert held_object_points(np.vstack([robot_pts, table]), 0.0, sf, arm_q, hand_q, palm, 0.1, 0.01) == 0
    # looking elsewhere finds nothing either
    assert held_object_points(scene, 0.0, sf, arm_q, hand_q, expected + 1.0, 0.1, 0.01) == 0
