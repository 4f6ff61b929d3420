"""The paper's Fig. 3a as a measurement (sprint.measure.latency_sweep): which sublayers each point removes, the
arithmetic of the points and of the two linear predictions against times we chose, and a real sweep of a tiny
model through the command line."""

from __future__ import annotations

import json

import pytest

from sprint.errors import SprintError
from sprint.measure import latency_sweep
from sprint.measure.protocol import Protocol
from sprint.measure.table import LatencyTable
from sprint.model.modeling_sprint import decoder_layers, removed_sublayers
from sprint.model.tiny import tiny_model


def test_counts_go_from_a_quarter_to_all_but_the_last_layer_from_the_top_down():
    assert latency_sweep.sweep_counts(30, (0.25, 0.5, 0.75, 1.0)) == [8, 15, 22, 29]
    assert latency_sweep.sweep_counts(4, (0.1, 0.25, 1.0)) == [1, 3]
    assert latency_sweep.removed_set(30, "attn", 3) == [(28, "attn"), (27, "attn"), (26, "attn")]
    assert latency_sweep.removed_set(30, "mlp", 29)[-1] == (0, "mlp")  # nearly all: the last layer stays
    for bad in ([], [0.0], [1.5]):
        with pytest.raises(SprintError, match="fractions"):
            latency_sweep.sweep_counts(30, bad)


def fake_rounds(model, cost, rounds=6):
    """An ``interleaved_rounds`` whose times are ``cost(n_attn, n_mlp)`` times a per-round drift (shared by all
    subjects of a round, as a machine's speed is); it runs every subject once to record what each removes."""
    seen = {}

    def rounds_fn(subjects, protocol, summarize, desc=""):
        for name, subject in subjects.items():
            seen[name] = sorted(removed_sublayers(subject()))
        samples = {name: [] for name in subjects}
        for r in range(rounds):
            drift = 1 + 0.1 * (r % 3)
            for name, removed in seen.items():
                kinds = [k for _, k in removed]
                samples[name].append(drift * cost(kinds.count("attn"), kinds.count("mlp")))
        return samples, summarize(samples), 1

    return rounds_fn, seen


def test_points_and_predictions_against_chosen_times(monkeypatch):
    model = tiny_model("llama", layers=8)
    proto = Protocol(prompt_len=8, gen_len=4, min_rounds=6, max_rounds=6)

    def cost(n_attn, n_mlp):  # attention: linear; MLP: saves less per sublayer the more are gone
        return 1.0 - 0.01 * n_attn - 0.02 * n_mlp + 0.001 * n_mlp * n_mlp

    rounds_fn, seen = fake_rounds(model, cost)
    monkeypatch.setattr(latency_sweep, "interleaved_rounds", rounds_fn)
    table = LatencyTable(device="x", model="tiny", prompt_len=8, gen_len=4, dense_s=2.0, t_attn_s=0.04, t_mlp_s=0.02)
    doc = latency_sweep.sweep_latency(model, "tiny", proto, fractions=(0.5, 1.0), fraction=0.25, table=table)
    assert doc["counts"] == [2, 4, 7] and doc["num_layers"] == 8  # the profile's n = 2 is among them
    assert seen["attn:2"] == [(5, "attn"), (6, "attn")] and seen["mlp:7"] == [(i, "mlp") for i in range(7)]
    assert seen["dense"] == [] and removed_sublayers(model) == []  # the model is left dense
    assert not any(any(layer.sprint_skip.values()) for layer in decoder_layers(model))
    points = {(p["kind"], p["removed"]): p for p in doc["points"]}
    assert len(points) == 1 + 2 * 3 and points[("none", 0)]["ratio"]["value"] == 1.0
    dense = doc["dense_s"]["value"]
    for (kind, n), p in points.items():
        if kind == "none":
            continue
        expected = cost(n, 0) if kind == "attn" else cost(0, n)
        assert p["ratio"]["value"] == pytest.approx(expected)  # the drift cancels in the per-round ratio
        assert p["latency_s"]["value"] == pytest.approx(dense * expected)
        # the profile's line, through the point at n = 2
        slope = (1 - cost(2, 0)) / 2 if kind == "attn" else (1 - cost(0, 2)) / 2
        assert p["predicted"]["profile"]["ratio"] == pytest.approx(1 - n * slope)
        share = 0.02 if kind == "attn" else 0.01  # the given table, as a share of its own dense time
        assert p["predicted"]["table"]["ratio"] == pytest.approx(1 - n * share)
        assert p["predicted"]["table"]["latency_s"] == pytest.approx(table.estimate(*((n, 0) if kind == "attn"
                                                                                     else (0, n))))
    lin = doc["linearity"]
    assert lin["attn"]["profile"]["max_abs_gap"] == pytest.approx(0, abs=1e-12) and all(lin["attn"]["profile"]["inside_ci"])
    assert lin["mlp"]["profile"]["max_abs_gap"] == pytest.approx(abs(cost(0, 7) - (1 - 7 * (1 - cost(0, 2)) / 2)))
    assert lin["mlp"]["profile"]["inside_ci"] == [True, False, False]  # noiseless rounds: a point's CI is the point
    assert lin["attn"]["fitted_share_per_sublayer"] == pytest.approx(0.01)
    assert lin["mlp"]["most_removed"] == 7 and json.loads(json.dumps(doc)) == doc


def test_a_pruned_model_or_a_bad_fraction_is_refused():
    model = tiny_model("llama", layers=4)
    proto = Protocol(prompt_len=8, gen_len=4)
    with pytest.raises(SprintError, match="profile's fraction"):
        latency_sweep.sweep_latency(model, "tiny", proto, fraction=1.0)
    from sprint.model.modeling_sprint import set_removed

    set_removed(model, [(1, "mlp")])
    with pytest.raises(SprintError, match="already has sublayers"):
        latency_sweep.sweep_latency(model, "tiny", proto)


def test_a_tiny_model_is_swept_through_the_command_line(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """``sprint latency-sweep`` times a real tiny model (one JSON), or says the machine was too noisy and writes
    nothing: a tiny model's sublayers can drown in a busy machine's noise."""
    from sprint.pipeline.cli import main

    monkeypatch.setenv("SPRINT_MLFLOW", "0")
    folder = tiny_model_dir("llama", 4)
    table = tmp_path / "latency.json"
    table.write_text(json.dumps({"device": "x", "model": "tiny", "prompt_len": 8, "gen_len": 4, "dense_s": 0.05,
                                 "t_attn_s": 0.002, "t_mlp_s": 0.003}))
    out = tmp_path / "sweep.json"
    status = main(["latency-sweep", "--model", str(folder), "--device", "cpu", "--dtype", "float32", "--prompt-len",
                   "8", "--gen-len", "4", "--rounds", "6", "--max-rounds", "6", "--max-spread", "0.99", "--attempts",
                   "1", "--warmup", "1", "--fractions", "0.5,1", "--latency", str(table), "--output", str(out)])
    if status == 2:
        assert "too noisy" in capsys.readouterr().err and not out.exists()
        return
    doc = json.loads(out.read_text())
    assert status == 0 and doc["counts"] == [1, 2, 3] and doc["rounds"] == 6 and doc["protocol"]["max_spread"] == 0.99
    assert set(doc["times_s"]) == {"dense", "attn:1", "attn:2", "attn:3", "mlp:1", "mlp:2", "mlp:3"}
    assert doc["predictions"]["table"]["given"]["path"] == str(table) and len(doc["points"]) == 7
    for p in doc["points"]:
        lo, hi = p["ratio"]["ci95"]
        assert lo <= p["ratio"]["value"] <= hi and set(p["predicted"]) == {"profile", "table"}
    bad = main(["latency-sweep", "--model", str(folder), "--fractions", "half", "--output", str(tmp_path / "x.json")])
    assert bad == 2 and "--fractions" in capsys.readouterr().err
