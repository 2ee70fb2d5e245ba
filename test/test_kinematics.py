"""Torch FK vs MuJoCo's own kinematics, gradients vs finite differences, devices and dtypes."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from dex_description.compose import compile_spec, floating_hand_spec, load_robot
from dex_description.kinematics import HandKinematics, KinematicTree, RobotKinematics
from dex_description.rotations import (
    make_transform,
    matrix_to_quat,
    matrix_to_rot6d,
    quat_to_matrix,
    rot6d_to_matrix,
    rotation_angle_between,
)

ROBOTS = ["ur10e_shadow", "ur5e_leap"]
N_CONFIGS = 1000
POS_TOL = 1e-5  # [m]
ROT_TOL = 1e-5  # [rad]


@pytest.fixture(scope="module", params=ROBOTS)
def robot(request):
    return load_robot(request.param, check=False)


def _random_q(lower: torch.Tensor, upper: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, lower.shape[0], generator=gen, dtype=torch.float64)
    return lower.double() + (upper.double() - lower.double()) * u


def _mujoco_poses(model, joint_names, q, free_pose=None):
    """(B, nbody, 3) xpos and (B, nbody, 3, 3) xmat from mj_kinematics."""
    data = mujoco.MjData(model)
    adr = np.array([model.jnt_qposadr[model.joint(j).id] for j in joint_names])
    pos = np.zeros((q.shape[0], model.nbody, 3))
    rot = np.zeros((q.shape[0], model.nbody, 3, 3))
    for i in range(q.shape[0]):
        data.qpos[:] = model.qpos0
        data.qpos[adr] = q[i]
        if free_pose is not None:
            data.qpos[:7] = free_pose[i]
        mujoco.mj_kinematics(model, data)
        pos[i] = data.xpos
        rot[i] = data.xmat.reshape(-1, 3, 3)
    return pos, rot


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_floating_hand_matches_mujoco(robot, dtype):
    gen = torch.Generator().manual_seed(1)
    hand = HandKinematics(robot, dtype=dtype, with_spheres=False)
    q = _random_q(hand.lower, hand.upper, N_CONFIGS, gen)
    quat = torch.randn(N_CONFIGS, 4, generator=gen, dtype=torch.float64)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    pos = 0.5 * torch.randn(N_CONFIGS, 3, generator=gen, dtype=torch.float64)
    world_T_root = make_transform(quat_to_matrix(quat), pos)
    fk = hand.forward(q.to(dtype), world_T_root.to(dtype)).links

    # Reference: the same hand on a freejoint, placed by MuJoCo itself.
    free = compile_spec(floating_hand_spec(robot.cfg, "free").spec)
    ref_pos, ref_rot = _mujoco_poses(free, hand.joint_names, q.numpy(), torch.cat([pos, quat], 1).numpy())
    ids = [free.body(b).id for b in fk.body_names]
    assert len(ids) == free.nbody - 1  # every body of the hand is covered
    pos_err = np.abs(ref_pos[:, ids] - fk.pos.double().numpy()).max()
    rot_err = rotation_angle_between(torch.as_tensor(ref_rot[:, ids]), fk.rot.double()).max().item()
    assert pos_err <= POS_TOL, pos_err
    assert rot_err <= ROT_TOL, rot_err


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_arm_and_hand_match_mujoco(robot, dtype):
    gen = torch.Generator().manual_seed(2)
    kin = RobotKinematics(robot, dtype=dtype, with_spheres=False)
    q = _random_q(kin.lower, kin.upper, N_CONFIGS, gen)
    fk = kin.forward(q.to(dtype))
    model = robot.model
    ref_pos, ref_rot = _mujoco_poses(model, kin.joint_names, q.numpy())
    ids = [model.body(b).id for b in fk.body_names]
    assert len(ids) == model.nbody - 1
    assert np.abs(ref_pos[:, ids] - fk.pos.double().numpy()).max() <= POS_TOL
    assert rotation_angle_between(torch.as_tensor(ref_rot[:, ids]), fk.rot.double()).max().item() <= ROT_TOL

    # the flange (tool0) site too
    data = mujoco.MjData(model)
    site = model.site(robot.cfg.arm.flange_site).id
    rot, pos = kin.flange(fk)
    adr = np.array([model.jnt_qposadr[model.joint(j).id] for j in kin.joint_names])
    for i in range(0, N_CONFIGS, 97):
        data.qpos[adr] = q[i].numpy()
        mujoco.mj_kinematics(model, data)
        assert np.allclose(data.site_xpos[site], pos[i].double().numpy(), atol=POS_TOL)
        assert np.allclose(data.site_xmat[site].reshape(3, 3), rot[i].double().numpy(), atol=ROT_TOL)


def test_gradients_match_finite_differences(robot):
    hand = HandKinematics(robot, dtype=torch.float64, with_spheres=False)
    gen = torch.Generator().manual_seed(3)
    q = _random_q(hand.lower, hand.upper, 3, gen).requires_grad_(True)
    d6 = torch.randn(3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    tip = hand.tree.body_names[-1]

    def f(q, d6, t):
        links = hand.forward(q, make_transform(rot6d_to_matrix(d6), t)).links
        rot, pos = links.body(tip)
        return torch.cat([pos, rot.flatten(1)], 1)

    assert torch.autograd.gradcheck(f, (q, d6, t), eps=1e-6, atol=1e-6)
    kin = RobotKinematics(robot, dtype=torch.float64, with_spheres=False)
    qa = _random_q(kin.lower, kin.upper, 2, gen).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda qq: kin.flange(kin.forward(qq))[1], (qa,), eps=1e-6, atol=1e-6)


def test_coupled_actuation_matches_model_tendons():
    robot = load_robot("ur10e_shadow", check=False)
    model = robot.hand_model
    hand = HandKinematics(robot, dtype=torch.float64, with_spheres=False)
    data = mujoco.MjData(model)
    u = torch.linspace(0.1, 2.5, 20, dtype=torch.float64)[None]
    q = hand.joints_from_actuated(u)[0].numpy()
    for name, value in zip(hand.joint_names, q):
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = value
    mujoco.mj_forward(model, data)
    for i, act in enumerate(robot.cfg.hand.actuated):
        if len(act.joints) > 1:
            tendon = model.actuator(f"{robot.cfg.hand.name}/{act.name}").trnid[0]
            assert data.ten_length[tendon] == pytest.approx(u[0, i].item(), abs=1e-12)


def test_rotation_conversions_roundtrip():
    gen = torch.Generator().manual_seed(4)
    quat = torch.randn(500, 4, generator=gen, dtype=torch.float64)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    rot = quat_to_matrix(quat)
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(500, 3, 3), atol=1e-12)
    back = matrix_to_quat(rot)
    assert torch.allclose(back, quat * torch.sign(quat[:, :1]), atol=1e-10)
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(rot)), rot, atol=1e-12)
    # MuJoCo agrees on the quaternion convention
    ref = np.zeros(9)
    mujoco.mju_quat2Mat(ref, quat[0].numpy())
    assert np.allclose(ref.reshape(3, 3), rot[0].numpy())


def test_bad_inputs_raise():
    robot = load_robot("ur5e_leap", check=False)
    hand = HandKinematics(robot, dtype=torch.float64, with_spheres=False)
    with pytest.raises(ValueError):
        hand.forward(torch.zeros(2, hand.n_joints + 1, dtype=torch.float64))
    with pytest.raises(ValueError):
        hand.forward(torch.zeros(2, hand.n_joints, dtype=torch.float64), torch.eye(4, dtype=torch.float64)[None])
    with pytest.raises(Exception):
        KinematicTree(robot.hand_model, hand.joint_names[:-1], robot.cfg.hand.root_body)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu(robot):
    gen = torch.Generator().manual_seed(5)
    cpu = HandKinematics(robot, dtype=torch.float32, with_spheres=False)
    q = _random_q(cpu.lower, cpu.upper, 256, gen).float()
    gpu = HandKinematics(robot, device="cuda", dtype=torch.float32, with_spheres=False)
    a = cpu.forward(q).links.pos
    b = gpu.forward(q.cuda()).links.pos.cpu()
    assert torch.allclose(a, b, atol=1e-6)


def test_attached_points_follow_their_links(robot):
    """Contact points and sphere centres from HandKinematics equal MuJoCo's link pose applied to them."""
    from dex_description.spheres import load_spheres

    hand = HandKinematics(robot, dtype=torch.float64)
    n_file = sum(len(r) for _, r in load_spheres(robot.cfg.hand.spheres).values())
    assert hand.spheres.local.shape[0] == n_file > 20
    assert hand.contacts.local.shape[0] == sum(len(c.points) for c in robot.cfg.hand.contact_points)
    gen = torch.Generator().manual_seed(6)
    q = _random_q(hand.lower, hand.upper, 4, gen)
    fk = hand.forward(q)
    model = robot.hand_model
    data = mujoco.MjData(model)
    adr = [model.jnt_qposadr[model.joint(j).id] for j in hand.joint_names]
    for i in range(4):
        data.qpos[adr] = q[i].numpy()
        mujoco.mj_kinematics(model, data)
        for k in range(hand.spheres.local.shape[0]):
            b = model.body(hand.spheres.group[k]).id
            want = data.xpos[b] + data.xmat[b].reshape(3, 3) @ hand.spheres.local[k].numpy()
            assert np.allclose(fk.sphere_centers[i, k].numpy(), want, atol=1e-12)
        for k, body in enumerate(hand.contacts.body_index.tolist()):
            b = model.body(hand.tree.body_names[body]).id
            want = data.xpos[b] + data.xmat[b].reshape(3, 3) @ hand.contacts.local[k].numpy()
            assert np.allclose(fk.contact_points[i, k].numpy(), want, atol=1e-12)


def test_robot_spheres_cover_arm_and_hand(robot):
    kin = RobotKinematics(robot, dtype=torch.float64)
    bodies = set(kin.spheres.group)
    assert "wrist_3_link" in bodies and robot.cfg.hand.root_body in bodies
    q = torch.zeros(1, kin.n_joints, dtype=torch.float64)
    assert kin.sphere_centers(kin.forward(q)).shape == (1, len(kin.spheres.group), 3)


@pytest.mark.parametrize("combo,arm", [("ur10e_shadow", "ur10e"), ("ur5e_leap", "ur5e")])
def test_flange_matches_the_nominal_ur_kinematics(combo, arm):
    """The composed arm's flange (tool0) is where UR's nominal DH model puts it, to 2 mm over random
    configurations (ur-analytic-ik's forward kinematics). Before the UR10e ``model_fixes`` entry the
    upstream model put it 16.6 mm short."""
    import mujoco

    ur = pytest.importorskip("ur_analytic_ik")
    robot = load_robot(combo)
    m, d = robot.model, mujoco.MjData(robot.model)
    adr = [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in robot.cfg.arm.joints]
    site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, robot.cfg.arm.flange_site)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(50):
        q = rng.uniform(-np.pi, np.pi, 6)
        d.qpos[adr] = q
        mujoco.mj_kinematics(m, d)
        base_T_flange = np.asarray(getattr(ur, arm).forward_kinematics(*q))
        worst = max(worst, float(np.linalg.norm(base_T_flange[:3, 3] - d.site_xpos[site])))
    assert worst < 2e-3, worst
