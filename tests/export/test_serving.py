"""The llama.cpp serving speedup (interleaved rounds, 95% CIs) and the export stage's document, on tiny GGUFs."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llama_cpp")

from sprint.errors import SprintError  # noqa: E402
from sprint.export.gguf import export_gguf  # noqa: E402
from sprint.export.llamacpp import ServingProtocol, serving_speedups, speedup_table  # noqa: E402
from sprint.pipeline.cli import main  # noqa: E402

FAST = ServingProtocol(prompt_len=16, gen_len=4, threads=(1, 2), min_rounds=6, max_rounds=6)


@pytest.mark.parametrize("timing", ["step", "whole"])
def test_serving_speedups_are_ratios_to_the_dense_gguf_with_cis(tiny_checkpoint, tmp_path, timing):
    from dataclasses import replace

    ggufs = {"dense": tmp_path / "d.gguf", "both": tmp_path / "b.gguf"}
    export_gguf(tiny_checkpoint("llama", "dense"), ggufs["dense"], "f16")
    export_gguf(tiny_checkpoint("llama", "both"), ggufs["both"], "f16")
    out = serving_speedups(ggufs, "dense", replace(FAST, timing=timing))
    assert set(out) == {"dense", "both", "dense-copy"}  # the dense model's second copy: the control
    for label, by_threads in out.items():
        assert set(by_threads) == {"t1", "t2"}
        for row in by_threads.values():
            assert row["rounds"] == 6 and row["pp_tok_s"] > 0 and row["tg_tok_s"] > 0
            for phase in ("pp", "tg", "e2e"):
                e = row[f"{phase}_speedup"]
                assert e["ci95"][0] <= e["value"] <= e["ci95"][1] and e["spread"] >= 0
    assert out["dense"]["t1"]["e2e_speedup"] == {"value": 1.0, "ci95": [1.0, 1.0], "spread": 0.0}
    table = speedup_table(out, {"dense": 1e6, "both": 8e5, "dense-copy": 1e6}, "f16")
    assert table.count("\n") == 1 + 3 * 2 and "| both | f16 | 0.8 | 1 |" in table
    with pytest.raises(SprintError, match="min_rounds"):
        serving_speedups(ggufs, "dense", ServingProtocol(min_rounds=3))
    with pytest.raises(SprintError, match="timing must be step or whole"):
        serving_speedups(ggufs, "dense", ServingProtocol(timing="generate"))


def test_export_stage_writes_checked_speedups(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """`sprint export --dense-model ... --checkpoints ...`: every GGUF written, checked, timed; the document's
    headline and the table printed.  The check text is the held-out corpus (monkeypatched: no data mirror here)."""
    import sprint.export.stage as stage
    from export_cases import token_data

    monkeypatch.setattr(stage, "check_text", lambda tokenizer, mirror, **kw: token_data(tokenizer))
    monkeypatch.setenv("SPRINT_MLFLOW", "0")
    dense, pruned = tiny_checkpoint("llama", "dense"), tiny_checkpoint("llama", "mixed")
    out = tmp_path / "llamacpp.json"
    assert main(["export", "--dense-model", str(dense), "--checkpoints", str(pruned), "--gguf-dir",
                 str(tmp_path / "gguf"), "--outtypes", "f32", "q8_0", "--threads", "1", "--prompt-len", "16",
                 "--gen-len", "4", "--rounds", "6", "--max-rounds", "6", "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    entry = doc["models"][str(pruned)]
    assert entry["label"] == "test/x1.2" and entry["method"] == "test"
    assert entry["gguf"]["f32"]["blocks"] == ["zero+m0", "a1+pad", "a2+m3"]
    assert (tmp_path / "gguf" / "test" / "x1.2.q8_0.gguf").is_file() and (tmp_path / "gguf" / "dense.f32.gguf").is_file()
    assert entry["gguf"]["f32"]["check"]["greedy_match"] and entry["gguf"]["f32"]["check"]["kv_cache"] == "f32"
    assert set(entry["llamacpp"]) == {"f32", "q8_0"} and set(entry["llamacpp"]["q8_0"]) == {"t1"}
    assert entry["llamacpp_speedup"] == entry["llamacpp"]["f32"]["t1"]["e2e_speedup"]["value"]
    assert doc["models"]["dense"]["llamacpp_control"]["f32"]["t1"]["e2e_speedup"]["value"] > 0
    printed = capsys.readouterr().out
    assert "llama.cpp serving speedup over the dense GGUF, q8_0" in printed and "| test/x1.2 | q8_0 |" in printed
