"""Grasp synthesis split over processes: shards of the candidates optimised side by side.

The optimiser's steps are dominated by per-operation overhead, not by the batch: 16 candidates
take ~75 % of the time of 32 on one core (LEAP 1.50 / 2.05 s, Shadow 2.71 / 3.55 s per synthesis,
`Synthesizer.run`, 1 torch thread, 6 end-to-end clouds). Threads do not help (the GIL: two threads
on half the candidates each were slower than one thread on all of them), so
:class:`ShardedSynthesizer` runs shard 0 in the calling process and the others in worker processes
(``spawn``: safe beside ROS and other threads), each with its own :class:`Synthesizer`, and
concatenates the results.

Every shard prunes on its own (``StageConfig.keep`` of its candidates), so the candidates kept after
the coarse stage are each shard's best half rather than the best half of all. The shards' seeds are
``seed`` (shard 0) and a hash of ``(seed, k)`` (:func:`shard_seed`). Results are deterministic for a
seed and a shard count, and a different set of candidates than one process draws.

Shard seeds were ``seed + 7919 k`` until 2026-12-07, the same stride as the orchestrator's seeds
between the tries of an episode (``dex_bringup.episode.attempt_seed``), so a second try's shard 0
drew the first try's shard 1 candidates again: half of the grasps that had not held. With two
processes the end-to-end benchmark lifted 29/40 (LEAP) against 34/40 in one process, the first tries
equal (27 / 28) and the second ones not (2 of 13 against 6 of 12). With hashed seeds two processes
lifted 36/40 (seeds 1000-1039, ``dexgrasp-e2e-bench --robots ur5e_leap --episodes 40 --processes 2``).

Pruning together (every shard to the end of the coarse stage, then the best half of all shared out
again) was tried before that fix, with the colliding seeds: the end-to-end benchmark's LEAP lifted
the same 29/40 as with per-shard pruning (seeds 1000-1039) and depth -> trajectory went 1.50 ->
1.87 s (the extra round trip), so the shards stay independent.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from dex_proposal.surface import ObjectSurface
from dex_proposal.synthesis import Candidates, SynthesisConfig, Synthesizer



def shard_seed(seed: int, k: int) -> int:
    """The synthesis seed of shard ``k`` for a run with ``seed``: ``seed`` itself for shard 0, else
    a hash of ``(seed, k)`` in [0, 2**31), so that no arithmetic series of run seeds (the tries of an
    episode step by a constant) lands on another run's shard."""
    if k == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) % 2**63, int(k)]).generate_state(1)[0] % 2**31)


_WORKER: dict = {}


def _init_worker(robot_ref: str, cfg: SynthesisConfig, threads: int) -> None:
    from dex_description.compose import load_robot

    from dex_proposal.hand import HandModel

    torch.set_num_threads(max(1, int(threads)))
    robot = load_robot(robot_ref, check=False)
    _WORKER["synthesizer"] = Synthesizer(HandModel(robot, cfg.device, cfg.torch_dtype), cfg)


def _run_shard(obj: ObjectSurface, seed: int, n: int) -> Candidates:
    return _WORKER["synthesizer"].run(obj, seed=seed, n=n)


def _ping() -> bool:
    return "synthesizer" in _WORKER


def shard_sizes(n: int, shards: int) -> list[int]:
    """``n`` candidates over at most ``shards`` shards, as even as possible, none empty."""
    shards = max(1, min(int(shards), int(n)))
    base = n // shards
    return [base + (1 if k < n % shards else 0) for k in range(shards)]


def concat(parts: list[Candidates]) -> Candidates:
    """One :class:`Candidates` from shards (in order); timings are shard 0's (the caller's wall time)."""
    if len(parts) == 1:
        return parts[0]
    out = {}
    for f in fields(Candidates):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "terms":
            out[f.name] = {k: torch.cat([v[k] for v in values]) for k in values[0]}
        elif f.name == "reasons":
            out[f.name] = [r for v in values for r in v]
        elif f.name == "timings":
            out[f.name] = dict(values[0])
        elif f.name == "n_initial":
            out[f.name] = sum(values)
        else:
            out[f.name] = torch.cat(values)
    return Candidates(**out)


class ShardedSynthesizer:
    """:meth:`run` like :class:`Synthesizer`, over ``shards`` processes (see module doc).

    Args:
        synthesizer: The in-process synthesiser (shard 0; its hand and config define the workers').
        robot_ref: Robot name or YAML path the workers load.
        shards: Processes in all, the caller's included (1: in-process only, no workers).
        threads: torch threads per worker.

    The workers start on the first :meth:`run` (or :meth:`start`), a few seconds each. Shard 0 runs
    with ``threads`` torch threads too (the process's setting is restored after it): with torch's
    default of one thread per core beside a worker, the end-to-end benchmark's LEAP depth ->
    trajectory went 2.2 -> 2.8 s instead of down.
    """

    def __init__(self, synthesizer: Synthesizer, robot_ref: str | Path, shards: int, threads: int = 1):
        if int(shards) < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self.synthesizer = synthesizer
        self.robot_ref = str(robot_ref)
        self.shards = int(shards)
        self.threads = int(threads)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def cfg(self) -> SynthesisConfig:
        return self.synthesizer.cfg

    def start(self) -> None:
        """Start the worker processes now (and wait until each has loaded its hand)."""
        if self.shards < 2 or self._pool is not None:
            return
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self.shards - 1, mp_context=ctx, initializer=_init_worker,
                                         initargs=(self.robot_ref, self.synthesizer.cfg, self.threads))
        for f in [self._pool.submit(_ping) for _ in range(self.shards - 1)]:
            f.result()

    def close(self) -> None:
        """Stop the workers (a running shard is abandoned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def run(self, obj: ObjectSurface, seed: int = 0, n: int | None = None, progress=None) -> Candidates:
        """Candidates for ``obj``: ``n`` (default ``cfg.n_candidates``) over the shards, shard 0 here."""
        n = n or self.cfg.n_candidates
        sizes = shard_sizes(n, self.shards)
        if len(sizes) == 1:
            return self.synthesizer.run(obj, seed=seed, n=n, progress=progress)
        self.start()
        obj_cpu = obj if self.cfg.device == "cpu" else obj.to("cpu", obj.grid.dtype)
        # into shared memory here, before the submit: pickling a tensor for a worker moves its storage
        # there from the executor's feeder thread, and shard 0 reading or converting the same tensors
        # meanwhile can crash the process (a segfault in 1 of 2 runs of a float64 pool test, seen
        # with a two-round variant of run(); this code reads the surface the same way, unguarded)
        for name in ("points", "normals", "center", "lo", "hi", "grid"):
            getattr(obj_cpu, name).share_memory_()
        futures = [self._pool.submit(_run_shard, obj_cpu, shard_seed(seed, k), sizes[k]) for k in range(1, len(sizes))]
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # like the workers: the cores are theirs too
        try:
            mine = self.synthesizer.run(obj, seed=seed, n=sizes[0], progress=progress)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            torch.set_num_threads(threads)
        t1 = time.perf_counter()
        parts = [mine] + [f.result() for f in futures]
        out = concat(parts)
        out.timings["shard_wait"] = time.perf_counter() - t1  # waiting for the workers after shard 0
        return out

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

