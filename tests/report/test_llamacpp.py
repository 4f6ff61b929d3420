"""The report's "llama.cpp speedup" column: read from {model}/llamacpp.json (the export stage's file) beside the
PyTorch measured speedup, the headline (e2e, f16, 1 thread) with its CI, matched by method, point and seed; no
column without the file (or, in the pipeline's mode, unless the file is listed)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sprint.errors import SprintError
from sprint.report import write_report
from sprint.report.load import llamacpp_metrics, load_results

from helpers import MODEL, llamacpp_record, metrics_record, pruning_record, write_json

LABEL = "llama.cpp speedup (×)"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Dense; SPRINT at 1.2x (seeds 0, 1) and 1.5x (seed 0); ShortGPT at 1.2x (seed 0); measured speedup 1.15."""
    root = tmp_path / "results"
    m = root / MODEL
    write_json(m / "latency.json", {"device": "cpu", "prompt_len": 64, "gen_len": 16, "dense_s": 1.0,
                                    "t_attn_s": 0.01, "t_mlp_s": 0.02})
    write_json(m / "metrics" / "dense.json", metrics_record("dense", None, 0, 0.75, 1.003))
    for method, target, seed in (("sprint", 1.2, 0), ("sprint", 1.2, 1), ("sprint", 1.5, 0), ("shortgpt", 1.2, 0)):
        write_json(m / "pruned" / method / f"seed{seed}" / f"x{target}" / "pruning.json",
                   pruning_record(method, target, seed, [(2, "attn"), (3, "mlp")]))
        write_json(m / "metrics" / method / f"seed{seed}" / f"x{target}.json",
                   metrics_record(method, target, seed, 0.6, 1.15))
    return root


def exported(results: Path, control: tuple | None = (1.004, 0.990, 1.020)) -> Path:
    """The export of the 1.2x checkpoints (not 1.5x): SPRINT 1.23 and 1.19 (seeds 0, 1), ShortGPT 1.21."""
    path = results / MODEL / "llamacpp.json"
    write_json(path, llamacpp_record({("sprint", "x1.2", 0): (1.23, 1.21, 1.25), ("sprint", "x1.2", 1): (1.19, 1.17, 1.22),
                                      ("shortgpt", "x1.2", 0): (1.21, 1.20, 1.23)}, control))
    return path


def main_table(text: str) -> pd.DataFrame:
    """The report's main table as cells (strings), by its header."""
    lines = [line for line in text.split("### Main results")[1].split("\n### ")[0].splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return pd.DataFrame(rows[2:], columns=rows[0])


def test_the_column_shows_the_headline_with_its_ci_beside_the_measured_speedup(results: Path) -> None:
    exported(results)
    written = write_report(results, results / "report.md")
    text = (results / "report.md").read_text()
    table = main_table(text).set_index(["method", "target"])
    columns = list(table.columns)
    assert columns[columns.index("measured speedup (×)") + 2] == LABEL  # after the measured speedup and its spread
    assert table.loc[("Dense", "1×"), LABEL] == "1.004 [0.990, 1.020]"  # its second copy, the protocol's control
    assert table.loc[("ShortGPT", "1.2×"), LABEL] == "1.210 [1.200, 1.230]"  # one seed: its CI
    assert table.loc[("SPRINT", "1.2×"), LABEL] == "1.210 ± 0.028"  # two seeds: mean ± sample std
    assert table.loc[("SPRINT", "1.5×"), LABEL] == "–"  # not exported
    assert table.loc[("SPRINT", "1.2×"), "measured speedup (×)"] == "1.150 ± 0.000"
    legend = text.split("### Main results")[1].split("|")[0]
    assert ("the end-to-end (a prompt, then its generation) speedup over the dense model, both served as GGUFs by "
            "llama.cpp (llama-cpp-python 0.3.36) with f16 weights on 1 thread, a 64-token prompt then 16 decoded "
            "tokens; the Hodges-Lehmann estimate over interleaved rounds [95% CI]") in legend
    csv = pd.read_csv(next(p for p in written if p.name == f"{MODEL}_main.csv")).set_index(["method", "point"])
    assert csv.loc[("shortgpt", "x1.2"), "llamacpp_speedup_mean"] == pytest.approx(1.21)
    assert csv.loc[("shortgpt", "x1.2"), ["llamacpp_speedup_lo_mean", "llamacpp_speedup_hi_mean"]].tolist() == \
        pytest.approx([1.20, 1.23])
    assert csv.loc[("sprint", "x1.2"), "llamacpp_speedup_std"] == pytest.approx(0.0282843, abs=1e-6)
    assert csv.loc[("dense", "x1"), "llamacpp_speedup_mean"] == pytest.approx(1.004)
    assert pd.isna(csv.loc[("sprint", "x1.5"), "llamacpp_speedup_mean"])


def test_without_the_file_there_is_no_column(results: Path) -> None:
    written = write_report(results, results / "report.md")
    text = (results / "report.md").read_text()
    assert "llama.cpp" not in text
    csv = pd.read_csv(next(p for p in written if p.name == f"{MODEL}_main.csv"))
    assert not [c for c in csv.columns if "llamacpp" in c]


def test_a_dense_model_without_its_control_shows_none(results: Path) -> None:
    exported(results, control=None)
    table = main_table(write_report(results, results / "report.md")[-1].read_text()).set_index(["method", "target"])
    assert table.loc[("Dense", "1×"), LABEL] == "–"  # not its own 1.0 against itself
    assert table.loc[("ShortGPT", "1.2×"), LABEL] == "1.210 [1.200, 1.230]"


def test_the_pipeline_lists_the_files_it_made(results: Path) -> None:
    """With --metrics (the pipeline's DAG) a llamacpp.json is read only when listed: a leftover of a configuration
    that exported stays out."""
    path = exported(results)
    metrics = sorted(results.glob(f"{MODEL}/metrics/**/*.json"))
    write_report(results, results / "report.md", metrics)
    assert "llama.cpp" not in (results / "report.md").read_text()
    write_report(results, results / "report.md", metrics, llamacpp=[path])
    assert main_table((results / "report.md").read_text()).set_index(["method", "target"]).loc[
        ("ShortGPT", "1.2×"), LABEL] == "1.210 [1.200, 1.230]"
    with pytest.raises(SprintError, match=r"dense.json: not a llama.cpp speedup file of .* \(<model>/llamacpp.json\)"):
        write_report(results, results / "report.md", metrics, llamacpp=[results / MODEL / "metrics" / "dense.json"])
    with pytest.raises(SprintError, match="llama.cpp speedup file not found"):
        write_report(results, results / "report.md", metrics, llamacpp=[results / "other" / "llamacpp.json"])


def test_a_malformed_file_is_named(results: Path) -> None:
    path = exported(results)
    document = json.loads(path.read_text())
    del document["headline"]
    path.write_text(json.dumps(document))
    with pytest.raises(SprintError, match=r"llamacpp.json: malformed llama.cpp speedup file \(KeyError"):
        load_results(results, MODEL)


def test_mlflow_values_are_the_reports(results: Path) -> None:
    """The report run's metrics and each evaluate run's, as the report shows them."""
    path = exported(results)
    report, runs = llamacpp_metrics(results)
    assert report[f"{MODEL}/llamacpp_speedup/shortgpt/x1.2/seed0"] == pytest.approx(1.21)
    assert report[f"{MODEL}/llamacpp_speedup/sprint/x1.2/seed1_lo"] == pytest.approx(1.17)
    assert report[f"{MODEL}/llamacpp_speedup/dense/x1/seed0_hi"] == pytest.approx(1.02)
    assert not [k for k in report if "x1.5" in k]
    tagged = {tuple(sorted(tags.items())): values for tags, values in runs}
    assert tagged[(("sprint.method", "sprint"), ("sprint.model", MODEL), ("sprint.point", "x1.2"),
                   ("sprint.seed", "1"))] == pytest.approx(
        {"llamacpp_speedup": 1.19, "llamacpp_speedup_lo": 1.17, "llamacpp_speedup_hi": 1.22})
    assert tagged[(("sprint.method", "dense"), ("sprint.model", MODEL), ("sprint.point", "x1"))][
        "llamacpp_speedup"] == pytest.approx(1.004)
    metrics = sorted(results.glob(f"{MODEL}/metrics/**/*.json"))
    assert llamacpp_metrics(results, metrics) == ({}, [])  # the pipeline's mode: only the files listed
    assert llamacpp_metrics(results, metrics, [path])[0] == report
