"""The proposal benchmark end to end on the smallest protocol: one object, one placement, both inputs,
LEAP, synthesis shared over two processes (the pool path and its shutdown). Checks the files and
that the numbers are the ones of the outcomes it evaluated, not the quality (that is the benchmark's
job)."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_the_benchmark_writes_its_json_and_table(tmp_path):
    from dex_proposal.bench import main

    out = tmp_path / "bench"
    rc = main(["--robots", "ur5e_leap", "--n-objects", "1", "--placements", "1", "--grasps", "2",
               "--candidates", "12", "--iter-scale", "0.5", "--hold", "0.2", "--image-objects", "1",
               "--processes", "2", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["processes"] == 2
    hand = res["hands"]["ur5e_leap"]
    assert set(hand) == {"complete", "partial"}
    for kind, s in hand.items():
        assert s["objects"] == 1 and 0 <= s["n"] <= 2, (kind, s)
        if s["n"]:
            assert 0.0 <= s["ssr"] <= 100.0 and s["penetration_mm"] >= 0.0
            assert s["grasps_per_s"] > 0 and math.isfinite(s["synth_s_per_object"])
        else:
            assert s["no_proposal"], (kind, s)  # no grasp is reported with why
        per = s["per_object"][0]
        assert per["n"] == s["n"] and per["partial"] == (kind == "partial")
    table = (out / "results.md").read_text()
    assert "| ur5e_leap | complete | 1 |" in table and "over 2 processes" in table
    assert (out / "proposal_ur5e_leap_complete.png").stat().st_size > 1000
