"""The end-to-end benchmark's bookkeeping (no simulation): summary counts and the table."""

from __future__ import annotations

from dex_bringup.e2e_bench import markdown, summarise


def _row(success, stack, d2t, verify):
    return {"robot": "ur5e_leap", "success": success, "stack_success": stack, "depth_to_trajectory_s": d2t,
            "stage_reached": "done" if stack else "verify", "reason": "" if stack else "verify: verify: dropped",
            "episode_wall_s": 5.0, "episode_sim_s": 12.0, "first_attempt_success": success and len(verify) == 1,
            "attempts": len(verify), "timings_s": {"propose": 2.0},
            "log": {"verify_attempts": [{"verdict": v, "truth_lifted": t} for v, t in verify]}}


def test_summary_counts_every_verify_decision_against_the_simulator():
    rows = [
        _row(True, True, 2.0, [(False, True), (True, True)]),  # a lifted object called dropped, then a good lift
        _row(False, True, 3.0, [(True, False)]),  # a false lift
        _row(False, False, None, [(False, False), (False, False)]),
    ]
    s = summarise("ur5e_leap", rows)
    assert (s["episodes"], s["success"], s["first_attempt_success"]) == (3, 1, 0)
    assert (s["verdict_agreement"], s["false_success"]) == (2, 1)
    assert (s["verify_decisions"], s["verify_correct"], s["verify_false_drop"], s["verify_false_lift"]) == (5, 3, 1, 1)
    assert s["depth_to_trajectory_p50_s"] == 2.5 and s["planned"] == 2
    meta = {"command": "dexgrasp-e2e-bench", "date": "-", "machine": "-", "loadavg": "-", "object_set": "builtin/test",
            "num_objects": 1, "n_candidates": 32, "executor": "open_loop", "attempts": 2, "stage_iters": {"coarse": 120}}
    text = markdown([s], meta, rows)
    assert "| 3/5 (1 / 1) |" in text and "{'coarse': 120}" in text
