"""The sim benchmark command runs end to end (tiny settings) and writes JSON + markdown."""

from __future__ import annotations

import json

from dex_sim import bench


def test_bench_smoke(tmp_path):
    out = tmp_path / "sim.json"
    assert bench.main(["--robots", "ur5e_leap", "--objects", "1", "--sim-seconds", "0.1", "--frames", "2",
                       "--no-ros", "--out", str(out), "--images", str(tmp_path)]) == 0
    data = json.loads(out.read_text())
    kinds = {r["kind"] for r in data["rows"]}
    assert kinds == {"physics", "camera"}
    assert all(r["rtf"] > 0 for r in data["rows"] if r["kind"] == "physics")
    assert "real-time factor" in out.with_suffix(".md").read_text()
    assert (tmp_path / "sim_scene_ur5e_leap.png").is_file()
