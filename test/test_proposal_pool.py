"""Synthesis shared over processes (dex_proposal.pool): the shards are exactly what one process
computes for their seeds and sizes, merged in order; the Proposer uses them when asked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from dex_proposal.api import Proposer, Status, default_config
from dex_proposal.errors import ConfigError
from dex_proposal.hand import HandModel
from dex_proposal.pool import ShardedSynthesizer, concat, shard_seed, shard_sizes
from dex_proposal.surface import build_surface
from dex_proposal.synthesis import StageConfig, Synthesizer


def test_shard_sizes_are_even_and_never_empty():
    assert shard_sizes(32, 2) == [16, 16]
    assert shard_sizes(7, 3) == [3, 2, 2]
    assert shard_sizes(2, 4) == [1, 1]
    assert shard_sizes(5, 1) == [5]


def test_shard_seeds_never_repeat_another_runs_shard():
    """Shard 0 keeps the run's seed; the other shards' seeds are hashed, so that the tries of an
    episode (run seeds a constant stride apart, ``attempt_seed``) draw no shard twice. With
    ``seed + 7919 k`` the second try's shard 0 was the first try's shard 1."""
    from dex_bringup.episode import attempt_seed

    assert shard_seed(5, 0) == 5 and shard_seed(-1, 0) == -1
    assert shard_seed(5, 1) == shard_seed(5, 1) != shard_seed(5, 2)  # deterministic, distinct
    runs = [attempt_seed(s, a) for s in range(1000, 1040) for a in (1, 2, 3)] + list(range(0, 200))
    drawn = [shard_seed(r, k) for r in runs for k in range(4)]
    assert len(set(drawn)) == len(drawn)
    assert all(0 <= shard_seed(r, k) < 2**31 for r in (-7, 0, 2**40) for k in (1, 3))


def _short_cfg(iters=(12, 4, 4)):
    stages = (StageConfig("coarse", "coarse", 0.01, iters[0], keep=0.5), StageConfig("fine", "fine", 0.01, iters[1], 0.3),
              StageConfig("grasp", "fine", 0.0, iters[2], 0.3, 0.0))
    return replace(default_config().synthesis, n_candidates=8, stages=stages, table_z=0.0)


@pytest.fixture(scope="module")
def can_surface():
    mesh = trimesh.creation.cylinder(radius=0.03, height=0.1)
    mesh.apply_translation([0.0, 0.5, 0.05])
    pts, fi = trimesh.sample.sample_surface(mesh, 2000, seed=0)
    return build_surface(np.asarray(pts), mesh.face_normals[fi], default_config().surface, 0.0)


def test_two_shards_are_the_two_single_process_runs_merged(can_surface):
    cfg = _short_cfg()
    syn = Synthesizer(HandModel("ur5e_leap"), cfg)
    sharded = ShardedSynthesizer(syn, "ur5e_leap", shards=2)
    try:
        merged = sharded.run(can_surface, seed=3)
    finally:
        sharded.close()
    a = syn.run(can_surface, seed=3, n=4)
    b = syn.run(can_surface, seed=shard_seed(3, 1), n=4)  # what the worker process computed
    expected = concat([a, b])
    assert merged.n_initial == 8 and len(merged.reasons) == len(expected.reasons) == 4  # each shard kept its half
    for name in ("pregrasp_T", "grasp_T", "pregrasp_u", "grasp_u", "squeeze_u", "energy"):
        torch.testing.assert_close(getattr(merged, name), getattr(expected, name), atol=1e-5, rtol=1e-4)
    assert merged.reasons == expected.reasons and torch.equal(merged.valid, expected.valid)
    assert set(merged.terms) == set(a.terms) and merged.terms["qp"].shape == (4,)
    assert "shard_wait" in merged.timings and "coarse" in merged.timings


def test_the_proposer_shares_its_candidates_over_processes_when_asked(can_surface):
    cfg = replace(default_config(), synthesis=_short_cfg((100, 30, 30)), top_k=4)
    with pytest.raises(ConfigError, match="processes"):
        Proposer("ur5e_leap", replace(cfg, processes=0))
    assert Proposer("ur5e_leap", cfg).sharded is None  # default: one process
    proposer = Proposer("ur5e_leap", replace(cfg, processes=2))
    try:
        pts = can_surface.points.numpy().astype(np.float64)
        res = proposer.propose(pts, can_surface.normals.numpy().astype(np.float64), seed=1)
        assert res.status is Status.OK and res.info["n_candidates"] == 8 and res.info["n_refined"] == 4
        again = proposer.propose(pts, can_surface.normals.numpy().astype(np.float64), seed=1)
        assert [p.energy for p in again.proposals] == pytest.approx([p.energy for p in res.proposals], rel=1e-5)
    finally:
        proposer.close()


def test_the_surface_is_shared_before_the_workers_get_it(can_surface):
    """Pickling a tensor for a worker moves its storage into shared memory from the executor's feeder
    thread; shard 0 converting the same surface to float64 meanwhile crashed the process (a segfault,
    1 run in 2, seen with a two-round variant of the pool). The pool shares the surface itself, in the caller, before it submits: every tensor
    is already shared when a worker's task is submitted, and the float64 run completes."""
    import copy

    names = ("points", "normals", "center", "lo", "hi", "grid")
    surface = copy.deepcopy(can_surface)
    assert not surface.grid.is_shared()
    syn = Synthesizer(HandModel("ur5e_leap"), replace(_short_cfg(), dtype="float64"))
    sharded = ShardedSynthesizer(syn, "ur5e_leap", shards=2)
    seen = []
    try:
        sharded.start()
        submit = sharded._pool.submit

        def spy(fn, obj, *args):
            seen.append(all(getattr(obj, n).is_shared() for n in names))
            return submit(fn, obj, *args)

        sharded._pool.submit = spy
        out = sharded.run(surface, seed=5)
    finally:
        sharded.close()
    assert seen == [True]
    assert out.n_initial == 8 and len(out.reasons) == 4 and bool(torch.isfinite(out.grasp_T).all())
