"""ROS-free proposal API: typed statuses for bad input, proposals for a good cloud, conversions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import trimesh

from dex_proposal.api import ProposalConfig, Proposer, Status, default_config, skeleton
from dex_proposal.synthesis import StageConfig


def _fast_cfg(**kw) -> ProposalConfig:
    cfg = default_config()
    stages = (StageConfig("coarse", "coarse", 0.01, 40), StageConfig("fine", "fine", 0.01, 10, 0.3),
              StageConfig("grasp", "fine", 0.0, 10, 0.3, 0.0))
    syn = replace(cfg.synthesis, n_candidates=8, stages=stages, max_contact_distance=0.05, max_penetration=0.02)
    return replace(cfg, synthesis=syn, top_k=4, **kw)


@pytest.fixture(scope="module")
def proposer():
    return Proposer("ur5e_leap", _fast_cfg())


def _cylinder(center=(0.0, 0.55, 0.0), radius=0.03, height=0.1, n=1500):
    m = trimesh.creation.cylinder(radius=radius, height=height)
    m.apply_translation([center[0], center[1], center[2] + height / 2])
    pts, fi = trimesh.sample.sample_surface_even(m, n, seed=0)
    return pts, m.face_normals[fi]


@pytest.mark.parametrize("case, status", [
    ("empty", Status.EMPTY_CLOUD),
    ("few", Status.TOO_FEW_POINTS),
    ("nan", Status.NAN_POINTS),
    ("inf_normal", Status.NAN_POINTS),
    ("zero_normals", Status.BAD_NORMALS),
    ("wrong_shape", Status.NAN_POINTS),
    ("far", Status.OUT_OF_REACH),
    ("huge", Status.TOO_LARGE),
    ("tiny", Status.TOO_SMALL),
    ("below", Status.BELOW_TABLE),
])
def test_bad_input_gives_a_status_and_no_proposals(proposer, case, status):
    pts, nrm = _cylinder()
    if case == "empty":
        pts, nrm = np.zeros((0, 3)), np.zeros((0, 3))
    elif case == "few":
        pts, nrm = pts[:10], nrm[:10]
    elif case == "nan":
        pts = pts.copy()
        pts[5, 1] = np.nan
    elif case == "inf_normal":
        nrm = nrm.copy()
        nrm[7] = np.inf
    elif case == "zero_normals":
        nrm = np.zeros_like(nrm)
    elif case == "wrong_shape":
        pts = pts[:, :2]
    elif case == "far":
        pts, nrm = _cylinder(center=(0.0, 3.0, 0.0))
    elif case == "huge":
        box = trimesh.creation.box((0.5, 0.5, 0.4))
        box.apply_translation([0.0, 0.6, 0.2])
        pts, fi = trimesh.sample.sample_surface_even(box, 2000, seed=0)
        nrm = box.face_normals[fi]
    elif case == "tiny":
        pts, nrm = _cylinder(radius=0.002, height=0.004)
    elif case == "below":
        pts, nrm = _cylinder(center=(0.0, 0.55, -0.3))
    result = proposer.propose(pts, nrm, seed=0)
    assert result.status is status, (result.status, result.message)
    assert result.proposals == []
    assert result.message


def test_good_cloud_gives_ranked_proposals(proposer):
    pts, nrm = _cylinder()
    result = proposer.propose(pts, nrm, seed=0)
    assert result.status is Status.OK, result.message
    assert 1 <= len(result.proposals) <= 4
    energies = [p.energy for p in result.proposals]
    assert energies == sorted(energies)
    scores = [p.score for p in result.proposals]
    assert all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
    hand = proposer.hand
    for p in result.proposals:
        for conf in (p.pregrasp, p.grasp, p.squeeze):
            assert conf.world_T_root.shape == (4, 4) and np.allclose(conf.world_T_root[3], [0, 0, 0, 1])
            assert conf.joints.shape == (hand.kin.n_joints,) and conf.actuated.shape == (hand.n_act,)
            assert np.all(conf.joints >= hand.kin._lower_np - 1e-6) and np.all(conf.joints <= hand.kin._upper_np + 1e-6)
        assert p.grasp.world_T_root[2, 3] > 0  # wrist above the table
        pads, segs = skeleton(hand, p.grasp)
        assert pads.shape == (hand.n_fingers, 3) and segs.shape[1:] == (2, 3)
    assert result.info["partial"] is False
    # deterministic for a seed
    again = proposer.propose(pts, nrm, seed=0)
    np.testing.assert_allclose(again.proposals[0].grasp.world_T_root, result.proposals[0].grasp.world_T_root)


def test_partial_view_cloud_is_completed(proposer):
    pts, nrm = _cylinder(n=3000)
    view = np.array([0.0, -1.0, 0.6])
    vis = nrm @ (view / np.linalg.norm(view)) > 0.05
    result = proposer.propose(pts[vis], nrm[vis], seed=1)
    assert result.info["partial"] and result.info["completed"]
    assert result.status in (Status.OK, Status.NO_VALID_GRASP)


def test_self_contact_checker_finds_fingers_pushed_into_the_palm_and_ignores_rest_contacts():
    """Shadow's joints at random combinations of their limits: some configurations put links into each
    other (in the e2e runs: the little-finger knuckle into the palm when it cups, which the sphere
    term cannot see), others do not; the named poses are clean (resting contacts are ignored)."""
    from dex_description.compose import load_robot
    from dex_proposal.hand import SelfContactChecker

    robot = load_robot("ur10e_shadow", check=False)
    check = SelfContactChecker(robot)
    names = list(robot.cfg.hand.joints)
    open_q = np.asarray(robot.cfg.hand.named_poses["open"], float)
    assert check(np.stack([open_q, np.asarray(robot.cfg.hand.named_poses["pre_shape"], float)])) == ["", ""]
    m = robot.hand_model
    lo, hi = (np.array([m.jnt_range[m.joint(j).id][k] for j in names]) for k in (0, 1))
    # every joint at one of its limits, many combinations: some must collide
    rng = np.random.default_rng(0)
    q = np.where(rng.random((64, len(names))) < 0.5, lo, hi)
    hits = check(q)
    assert any(hits) and not all(hits)
    assert all("-" in h for h in hits if h)


def test_proposals_in_self_contact_are_rejected(monkeypatch):
    """With the MuJoCo check reporting a collision for every configuration, nothing survives (and the
    reason says why); with the check off, the same cloud gives proposals."""
    from dex_proposal import hand as hand_mod

    pts, nrm = _cylinder()
    monkeypatch.setattr(hand_mod.SelfContactChecker, "__call__", lambda self, q: ["rh_a-rh_b"] * len(np.atleast_2d(q)))
    proposer = Proposer("ur5e_leap", _fast_cfg())
    res = proposer.propose(pts, nrm, seed=0)
    assert res.status is Status.NO_VALID_GRASP and "self-contact" in res.message
    res = Proposer("ur5e_leap", _fast_cfg(check_self_contact=False)).propose(pts, nrm, seed=0)
    assert res.status is Status.OK


def test_self_contact_path_check_sees_collisions_between_clean_ends():
    """A straight joint path can pass through self-contact although both ends are clean (the simulated
    Shadow hand got stuck that way): ``path`` finds such paths; the open -> pre-shape path is clean."""
    from dex_description.compose import load_robot
    from dex_proposal.hand import SelfContactChecker

    robot = load_robot("ur10e_shadow", check=False)
    check = SelfContactChecker(robot)
    poses = robot.cfg.hand.named_poses
    open_q, pre = np.asarray(poses["open"], float), np.asarray(poses["pre_shape"], float)
    assert check.path(open_q, pre[None]) == [""]
    m = robot.hand_model
    names = list(robot.cfg.hand.joints)
    lo, hi = (np.array([m.jnt_range[m.joint(j).id][k] for j in names]) for k in (0, 1))
    rng = np.random.default_rng(1)
    q = lo + (hi - lo) * rng.random((120, len(names)))
    ends = check(q)
    paths = check.path(open_q, q)
    assert all(p for e, p in zip(ends, paths) if e)  # a colliding end makes its path collide
    assert any(p and not e for e, p in zip(ends, paths))  # and some clean ends have colliding paths


def test_warm_up_runs_the_whole_pipeline_and_changes_no_later_result():
    """The warm-up (run by the proposal node and the in-process episode before the first request)
    synthesises for real on a ball in front of each arm, and a proposer that warmed up proposes
    exactly what a fresh one does."""
    pts, nrm = _cylinder()
    fresh = Proposer("ur5e_leap", _fast_cfg()).propose(pts, nrm, seed=3)
    warmed = Proposer("ur5e_leap", _fast_cfg())
    res = warmed.warm_up()
    assert res.status == Status.OK and res.proposals, res.message
    assert res.timings["surface"] > 0 and "opt_grasp" in res.timings  # the synthesis ran
    again = warmed.propose(pts, nrm, seed=3)
    assert len(again.proposals) == len(fresh.proposals) > 0
    for a, b in zip(again.proposals, fresh.proposals):
        np.testing.assert_array_equal(a.grasp.world_T_root, b.grasp.world_T_root)
        np.testing.assert_array_equal(a.squeeze.joints, b.squeeze.joints)
    shadow = Proposer("ur10e_shadow", _fast_cfg()).warm_up()  # the UR10e stands elsewhere: still reachable
    assert shadow.status == Status.OK, shadow.message
