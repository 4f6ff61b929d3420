"""The benchmark command end to end in --quick mode: every required key, finite ratios and exponents."""

from __future__ import annotations

import json
import math

from sprint.bench.cases import fit_exponent, median_run, parse_shape
from sprint.bench.cli import main
from sprint.bench.render import render_markdown


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_fit_exponent_and_shapes():
    assert abs(fit_exponent([1, 2, 4], [3, 12, 48]) - 2.0) < 1e-9
    assert fit_exponent([4, 4], [1, 2]) is None
    assert parse_shape("32x256") == (32, 256)


def test_median_run_of_repeated_sprint_runs():
    runs = [{"status": "ok", "wall_time_s": t, "i": i} for i, t in enumerate([5.0, 3.0, 4.0])]
    assert median_run(runs) == {**runs[2], "wall_time_samples_s": [5.0, 3.0, 4.0]}
    assert median_run(runs[:2])["wall_time_s"] == 5.0  # an even count: the slower middle run
    assert median_run(runs + [{"status": "error"}])["status"] == "error"


def test_bench_quick(tiny_model_dir, tmp_path):
    out = tmp_path / "bench"
    argv = ["--quick", "--model", str(tiny_model_dir("llama", 4)), "--methods", "sprint,blockpruner",
            "--one-shot", "wanda:2of4,slicegpt:s25", "--scaling-greedy-steps", "1", "--sprint-repeats", "2",
            "--output", str(out)]
    assert main(argv) == 0
    bench = json.loads((out / "bench.json").read_text())
    for key in ("methods", "forward_pass_s", "floor_ratio", "scaling", "speedup_error", "machine", "command", "date",
                "latency", "latency_check"):
        assert key in bench, key
    assert set(bench["methods"]) == {"sprint", "blockpruner"}
    for method, s in bench["methods"].items():
        assert s["status"] == "ok", (method, s)
        for key in ("wall_time_s", "peak_rss_mb", "ratio_to_sprint", "load_time_s"):
            assert _finite(s[key]) and s[key] > 0, (method, key, s[key])
    assert bench["methods"]["sprint"]["ratio_to_sprint"] == 1.0
    assert set(bench["one_shot"]) == {"wanda:2of4", "slicegpt:s25"}
    for key, s in bench["one_shot"].items():
        assert s["status"] == "ok" and _finite(s["wall_time_s"]) and _finite(s["ratio_to_sprint"]), (key, s)
    assert "## 1b. One-shot methods at a setting" in (out / "bench.md").read_text()
    samples = bench["methods"]["sprint"]["wall_time_samples_s"]  # --sprint-repeats 2: the slower one counts
    assert len(samples) == 2 and bench["methods"]["sprint"]["wall_time_s"] == max(samples)
    assert _finite(bench["forward_pass_s"]) and _finite(bench["floor_ratio"])
    for method in ("sprint", "blockpruner"):
        scaling = bench["scaling"][method]
        assert _finite(scaling["exponent_tokens"]) and _finite(scaling["exponent_depth"])
        assert len(scaling["tokens"]["sizes"]) == 3 and scaling["depth"]["sizes"] == [2, 3, 4]
    assert bench["scaling"]["sprint"]["tokens"]["basis"] == "wall_time"
    assert bench["scaling"]["blockpruner"]["tokens"]["basis"] == "first_step"  # --scaling-greedy-steps 1
    floors = bench["floor_by_tokens"]  # item 2 again at each of sprint's token-scaling sizes
    scaling_runs = bench["scaling"]["sprint"]["tokens"]["runs"]
    assert len({run["calibration"] for run in scaling_runs}) == 3
    assert [r["calibration"] for r in floors] == [run["calibration"] for run in scaling_runs]
    assert all(_finite(r["floor_ratio"]) and r["floor_ratio"] > 0 for r in floors)
    assert set(bench["speedup_error"]) == {"sprint", "blockpruner"}
    assert all(_finite(e) for e in bench["speedup_error"].values())
    for key in ("cpu", "cores", "torch_threads", "torch", "transformers"):
        assert key in bench["machine"]
    assert json.loads((out / "latency.json").read_text())["dense_s"] > 0
    md = (out / "bench.md").read_text()
    assert md == render_markdown(bench)
    for heading in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5."):
        assert heading in md
    assert "PASS" in md or "FAIL" in md
    assert "median of 2 fresh-process runs" in md


def test_weight_methods_are_refused_in_one_line(tiny_model_dir, tmp_path, capsys):
    argv = ["--quick", "--model", str(tiny_model_dir("llama", 2)), "--methods", "sprint,wanda", "--output",
            str(tmp_path / "bench")]
    assert main(argv) == 2
    assert "one-shot methods go to --one-shot METHOD:SETTING" in capsys.readouterr().err
    argv[argv.index("sprint,wanda")] = "sprint"
    assert main(argv + ["--one-shot", "sleb:2of4"]) == 2
    assert "'sleb' is not a one-shot method" in capsys.readouterr().err
    assert main(argv + ["--one-shot", "slicegpt:2of4"]) == 2
    assert "slicing setting '2of4': expected sP" in capsys.readouterr().err
