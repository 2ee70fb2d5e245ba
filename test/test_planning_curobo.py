"""cuRobo backend without cuRobo: selection, the typed error, and our conversions to its inputs.

cuRobo needs CUDA and is not on PyPI for this setup, so nothing here runs cuRobo itself. What is
tested for real: the clear error when it is absent; the URDF we generate for it (parsed by
Pinocchio's URDF parser and compared with our FK); the sphere/robot/world dictionaries; the start
and goal arrays. The glue of :class:`CuroboPlanner` is exercised against an explicit API double
(``FakeCurobo`` below: records its inputs, returns a straight-line plan), which checks our side of
the calls, not cuRobo.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from dex_description.compose import load_robot
from dex_description.kinematics import RobotKinematics
from dex_description.spheres import load_spheres
from dex_planning.config import default_config, override
from dex_planning.curobo_backend import (
    CUROBO_MISSING,
    FLANGE_LINK,
    CuroboPlanner,
    import_curobo,
    robot_cfg_dict,
    start_goal_arrays,
    urdf_from_model,
    voxelize,
    world_cfg_dict,
)
from dex_planning.errors import BackendUnavailableError
from dex_planning.interface import REASON_NO_IK, REASON_PLANNER_TIMEOUT, ProposalTarget
from dex_planning.planner import make_planner
from dex_planning.scene import Box, default_scene

COMBOS = ("ur5e_leap", "ur10e_shadow")


@pytest.fixture(scope="module", params=COMBOS)
def robot(request):
    return load_robot(request.param)


def test_missing_curobo_gives_a_clear_typed_error(robot, monkeypatch):
    monkeypatch.setitem(sys.modules, "curobo", None)  # import curobo -> ImportError, installed or not
    cfg = override(default_config(), {"backend": "curobo"})
    with pytest.raises(BackendUnavailableError) as info:
        make_planner(robot, cfg)
    msg = str(info.value)
    assert "cuRobo backend selected but `curobo` is not importable" in msg and "set backend: cpu" in msg
    assert CUROBO_MISSING in msg
    with pytest.raises(BackendUnavailableError):
        import_curobo()
    assert make_planner(robot, default_config()).backend == "cpu"


def test_generated_urdf_matches_our_kinematics(robot):
    pin = pytest.importorskip("pinocchio")
    urdf = urdf_from_model(robot)
    model = pin.buildModelFromXML(urdf)
    data = model.createData()
    cfg = robot.cfg
    names = list(cfg.arm.joints) + list(cfg.hand.joints)
    assert sorted(model.names[1:]) == sorted(names)
    kin = RobotKinematics(robot, dtype=torch.float64, with_spheres=False)
    rng = np.random.default_rng(0)
    q = rng.uniform(kin.lower.numpy(), kin.upper.numpy(), (20, len(names)))
    R, p = kin.flange(kin.forward(torch.as_tensor(q)))
    fid = model.getFrameId(FLANGE_LINK)
    for i in range(len(q)):
        qp = np.zeros(model.nq)
        for name, value in zip(names, q[i]):
            qp[model.idx_qs[model.getJointId(name)]] = value
        pin.framesForwardKinematics(model, data, qp)
        T = data.oMf[fid]
        assert np.abs(T.translation - p[i].numpy()).max() < 1e-6
        assert np.abs(T.rotation - R[i].numpy()).max() < 1e-6
    lims = dict(zip(cfg.arm.joints, cfg.arm.velocity_limits))
    for name, v in lims.items():
        assert model.velocityLimit[model.idx_vs[model.getJointId(name)]] == pytest.approx(v)


def test_robot_cfg_dict(robot, tmp_path):
    pre = np.asarray(robot.cfg.hand.named_poses["pre_shape"])
    d = robot_cfg_dict(robot, tmp_path / "r.urdf", pre)["kinematics"]
    urdf = urdf_from_model(robot)
    for link in d["collision_link_names"]:
        assert f'<link name="{link}"' in urdf
    n_file = sum(len(r) for path in (robot.cfg.arm.spheres, robot.cfg.hand.spheres) for _, (_, r) in load_spheres(path).items())
    assert sum(len(v) for v in d["collision_spheres"].values()) == n_file
    assert d["lock_joints"] == {j: pytest.approx(v) for j, v in zip(robot.cfg.hand.joints, pre)}
    assert d["cspace"]["joint_names"] == list(robot.cfg.arm.joints) + list(robot.cfg.hand.joints)
    assert len(d["cspace"]["max_acceleration"]) == len(d["cspace"]["joint_names"])
    assert d["ee_link"] == FLANGE_LINK and d["base_link"] == robot.cfg.arm.base_body
    ignore = d["self_collision_ignore"]

    def ignored(a, b):
        return b in ignore.get(a, []) or a in ignore.get(b, [])

    root = robot.cfg.hand.root_body
    if root in d["collision_link_names"] and "wrist_3_link" in d["collision_link_names"]:
        assert ignored("wrist_3_link", root)  # welded through the flange
    assert ignored("shoulder_link", "upper_arm_link")  # parent/child
    assert not ignored("shoulder_link", "forearm_link")
    fingers = [c.body for c in robot.cfg.hand.contact_points if c.body in d["collision_link_names"]]
    assert ignored(fingers[0], fingers[1])  # hand vs hand


def test_world_dict_and_arrays(robot):
    rng = np.random.default_rng(1)
    cloud = rng.uniform([0.0, 0.5, 0.0], [0.1, 0.6, 0.1], (500, 3))
    scene = default_scene(cloud=cloud, boxes=(Box.axis_aligned("crate", (0.3, 0.4, 0.1), (0.1, 0.2, 0.2)),))
    w = world_cfg_dict(scene, np.eye(4), 0.02)["cuboid"]
    assert w["table"]["dims"] == pytest.approx([1.2, 1.4, 0.05])
    assert w["crate"]["pose"][:3] == pytest.approx([0.3, 0.4, 0.1]) and w["crate"]["pose"][3:] == pytest.approx([1, 0, 0, 0])
    centres = voxelize(cloud, 0.02)
    assert sum(k.startswith("cloud_") for k in w) == len(centres)
    # every point lies in an occupied voxel
    d = np.abs(cloud[:, None, :] - centres[None]).max(axis=2)
    assert np.all(d.min(axis=1) <= 0.01 + 1e-12)
    T = np.eye(4)
    T[:3, 3] = [0.2, 0.5, 0.3]
    start, pos, quat = start_goal_arrays(np.zeros(6), T, np.eye(4))
    assert start.shape == (1, 6) and pos.shape == (1, 3) and quat.shape == (1, 4)
    assert np.allclose(pos, [[0.2, 0.5, 0.3]]) and np.allclose(quat, [[1, 0, 0, 0]])


# --------------------------------------------------------------------------- glue vs an API double


class FakeCurobo:
    """Stands in for the cuRobo modules the backend imports; records calls; plans a straight line
    in joint space to ``goal_q`` (set by the test). Not cuRobo: it checks our side of the API."""

    def __init__(self, goal_q_fn):
        self.calls = {}
        self.goal_q_fn = goal_q_fn
        fake = self

        class TensorDeviceType:
            def __init__(self, device=None):
                self.device = torch.device("cpu")
                self.dtype = torch.float32

        class Pose:
            def __init__(self, position, quaternion):
                self.position, self.quaternion = position, quaternion

        class JointState:
            def __init__(self, position, joint_names, velocity=None, acceleration=None):
                self.position, self.joint_names = position, joint_names
                self.velocity, self.acceleration = velocity, acceleration

            @staticmethod
            def from_position(position, joint_names=None):
                return JointState(position, joint_names)

        class WorldConfig:
            @staticmethod
            def from_dict(d):
                fake.calls.setdefault("worlds", []).append(d)
                return d

        class MotionGenConfig:
            @staticmethod
            def load_from_robot_config(robot_cfg, world, tensor_args, **kwargs):
                fake.calls["robot_cfg"], fake.calls["config_kwargs"] = robot_cfg, kwargs
                return robot_cfg

        class MotionGenPlanConfig:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        class Result:
            def __init__(self, plan, dt):
                self.success = torch.tensor([True])
                self.status = "Success"
                self.interpolation_dt = dt
                self._plan = plan

            def get_interpolated_plan(self):
                return self._plan

        class MotionGen:
            def __init__(self, cfg):
                self.cfg = cfg

            def warmup(self):
                fake.calls["warmup"] = True

            def update_world(self, world):
                fake.calls["world"] = world

            def update_locked_joints(self, lock, robot_cfg):
                fake.calls["locked"] = lock

            def plan_single(self, start, goal, plan_cfg):
                fake.calls["plan"] = (start, goal, plan_cfg)
                q0 = start.position.numpy()[0].astype(np.float64)
                q1 = fake.goal_q_fn()
                s = np.linspace(0, 1, 400)
                sm = 10 * s**3 - 15 * s**4 + 6 * s**5
                T = 6.0
                q = q0 + sm[:, None] * (q1 - q0)
                qd = np.gradient(q, T / 399, axis=0)
                qdd = np.gradient(qd, T / 399, axis=0)
                plan = JointState(torch.as_tensor(q), list(start.joint_names), torch.as_tensor(qd), torch.as_tensor(qdd))
                return Result(plan, T / 399)

        def module(name, **attrs):
            m = types.ModuleType(name)
            m.__dict__.update(attrs)
            return m

        self.modules = {
            "curobo": module("curobo"),
            "curobo.types": module("curobo.types"),
            "curobo.types.base": module("curobo.types.base", TensorDeviceType=TensorDeviceType),
            "curobo.types.math": module("curobo.types.math", Pose=Pose),
            "curobo.types.robot": module("curobo.types.robot", JointState=JointState),
            "curobo.geom": module("curobo.geom"),
            "curobo.geom.types": module("curobo.geom.types", WorldConfig=WorldConfig),
            "curobo.wrap": module("curobo.wrap"),
            "curobo.wrap.reacher": module("curobo.wrap.reacher"),
            "curobo.wrap.reacher.motion_gen": module("curobo.wrap.reacher.motion_gen", MotionGen=MotionGen,
                                                      MotionGenConfig=MotionGenConfig,
                                                      MotionGenPlanConfig=MotionGenPlanConfig),
        }


def test_curobo_glue_against_an_api_double(robot, monkeypatch, tmp_path):
    goal = {}
    fake = FakeCurobo(lambda: goal["q"])
    for name, mod in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    cfg = override(default_config(), {"backend": "curobo", "curobo.device": "cpu"})
    planner = make_planner(robot, cfg)
    assert isinstance(planner, CuroboPlanner) and fake.calls["warmup"]
    assert fake.calls["robot_cfg"]["kinematics"]["urdf_path"].endswith(".urdf")
    assert fake.calls["config_kwargs"]["interpolation_dt"] == cfg.curobo.interpolation_dt
    home = np.asarray(robot.cfg.arm.named_poses["home"])
    open_q = np.asarray(robot.cfg.hand.named_poses["open"])
    pre = np.asarray(robot.cfg.hand.named_poses["pre_shape"]) * 0.9
    goal["q"] = home + np.array([1.2, -0.2, 0.3, -0.1, 0.2, 0.4])
    target_root = planner.flange_pose(goal["q"]) @ robot.cfg.flange_T_root.matrix()
    scene = default_scene()
    far = np.eye(4)
    far[:3, 3] = [3.0, 3.0, 1.0]
    res = planner.select(home, open_q, [ProposalTarget("far", far, pre), ProposalTarget("p", target_root, pre)], scene)
    # proposal 0 is out of reach: rejected (typed by the CPU model) before cuRobo runs
    assert res.success and res.index == 1 and res.rejections[0].reason == REASON_NO_IK
    start, pose, plan_cfg = fake.calls["plan"]
    assert np.allclose(start.position.numpy(), home[None], atol=1e-6)
    assert list(start.joint_names) == list(robot.cfg.arm.joints)
    flange = planner.flange_pose(goal["q"])
    assert np.allclose(pose.position.numpy(), flange[None, :3, 3], atol=1e-6)
    assert fake.calls["locked"] == {j: pytest.approx(v) for j, v in zip(robot.cfg.hand.joints, pre)}
    assert "table" in fake.calls["world"]["cuboid"]
    assert np.allclose(res.attempt.arm.q[-1], goal["q"], atol=1e-6)
    assert res.hand.duration == pytest.approx(res.arm.duration)
    # a double that plans straight through an obstacle: the dense re-check rejects it
    def hand_at(q):
        return (planner.flange_pose(q) @ robot.cfg.flange_T_root.matrix())[:3, 3]

    pos = hand_at(0.5 * (home + goal["q"]))
    assert min(np.linalg.norm(pos - hand_at(home)), np.linalg.norm(pos - hand_at(goal["q"]))) > 0.2
    blocked = default_scene(boxes=(Box.axis_aligned("in_the_way", pos, (0.08, 0.08, 0.08)),))
    res = planner.select(home, open_q, [ProposalTarget("p", target_root, pre)], blocked)
    assert not res.success and res.rejections, res.message
    assert res.rejections[0].reason == REASON_PLANNER_TIMEOUT
    assert "dense re-check" in res.rejections[0].message and res.arm is None
