"""Fingertip contact points in the robot YAMLs lie on the pads and face the flexion side."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dex_description.compose import load_robot
from dex_description.contacts import pad_points
from dex_description.kinematics import HandKinematics
from dex_description.spheres import collision_geoms, signed_depth

ROBOTS = ["ur10e_shadow", "ur5e_leap"]


@pytest.fixture(scope="module", params=ROBOTS)
def robot(request):
    return load_robot(request.param, check=False)


def test_every_finger_has_pad_points(robot):
    fingers = {c.finger for c in robot.cfg.hand.contact_points}
    assert "thumb" in fingers and len(fingers) == (5 if "shadow" in robot.name else 4)


def test_points_on_collision_surface_and_normals_outward(robot):
    model = robot.hand_model
    for cp in robot.cfg.hand.contact_points:
        geoms = collision_geoms(model, cp.body)
        on = signed_depth(geoms, cp.points)
        assert np.abs(on).max() < 1e-3, (cp.finger, on)  # on the surface (convex hull vs mesh: < 1 mm)
        out = signed_depth(geoms, cp.points + 3e-3 * cp.normals)
        assert (out < -1e-3).all(), (cp.finger, out)  # 3 mm along the normal is outside


def test_pads_face_the_flexion_direction(robot):
    """Flexing a finger's last joint moves its pad points along their normals."""
    hand = HandKinematics(robot, dtype=torch.float64, with_spheres=False)
    model = robot.hand_model
    q0 = torch.as_tensor(robot.cfg.hand.named_poses["open"], dtype=torch.float64)[None]
    base = hand.forward(q0)
    for cp in robot.cfg.hand.contact_points:
        body = model.body(cp.body).id
        joint = model.joint(model.body_jntadr[body] + model.body_jntnum[body] - 1).name
        q1 = q0.clone()
        q1[0, hand.joint_names.index(joint)] += 0.05
        moved = hand.forward(q1)
        sel = [i for i, g in enumerate(hand.contacts.group) if g == cp.finger]
        velocity = (moved.contact_points - base.contact_points)[0, sel]
        along = (velocity * base.contact_normals[0, sel]).sum(-1)
        assert (along > 0).all(), (cp.finger, along)


def test_regeneration_matches_yaml(robot):
    model = robot.hand_model
    for cp in robot.cfg.hand.contact_points:
        pts, nrm = pad_points(model, cp.body, len(cp.points))
        assert np.allclose(pts, cp.points, atol=2e-5) and np.allclose(nrm, cp.normals, atol=2e-5)


def test_leap_index_tip_fix_applied():
    """The upstream copy offsets the index tip 18 mm; after the YAML's model fix all tips agree."""
    model = load_robot("ur5e_leap", check=False).hand_model
    pos = {n: model.geom(f"{n}_tip").pos.copy() for n in ("if", "mf", "rf")}
    assert np.allclose(pos["if"], pos["mf"]) and np.allclose(pos["mf"], pos["rf"])


def test_yaml_palm_frame_agrees_with_the_pads(robot):
    """``hand.palm`` (used to place the hand for grasp initialisation and planning) faces where the
    non-thumb pads face at the open pose, its finger direction points from the palm to the
    fingertips, and its centre lies on the palm side of the pads' plane."""
    hand = robot.cfg.hand
    kin = HandKinematics(robot, "cpu", torch.float64, with_spheres=False)
    q = torch.as_tensor(np.asarray(hand.named_poses["open"], float))[None]
    fk = kin.forward(q)
    pts, nrm = fk.contact_points[0].numpy(), fk.contact_normals[0].numpy()
    fingers = [c.finger for c in hand.contact_points for _ in range(len(c.points))]
    others = np.array([f != "thumb" for f in fingers])
    n_pads = nrm[others].mean(0)
    n_pads /= np.linalg.norm(n_pads)
    n = np.asarray(hand.palm.normal, float) / np.linalg.norm(hand.palm.normal)
    f = np.asarray(hand.palm.finger_direction, float) / np.linalg.norm(hand.palm.finger_direction)
    assert n @ n_pads > 0.8, (n, n_pads)
    tips = pts[others].mean(0)
    assert (tips - hand.palm.center) @ f > 0.05  # fingertips are > 5 cm further along the fingers
    assert abs((tips - hand.palm.center) @ n) < 0.05  # centre within 5 cm of the pads' plane
