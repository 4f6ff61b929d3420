"""Independent references for the numbers SPRINT computes, on tiny random models of every family.

Each test recomputes a library quantity another way: the sublayer view against the model's own forward
(``output_hidden_states``, forward hooks, ``labels=`` loss) and against a saved pruned checkpoint loaded as a
user loads it; ζ̃ / ζ (paper Eq. 5) against the model with the candidate removed and ``torch.linalg.lstsq`` in
float64 on the explicit matrices; the baselines' picks against brute force over every unit; and every method on
every family end to end.
"""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from sprint.model.tiny import FAMILIES, tiny_model
from sprint.model.tiny import word_tokenizer as tiny_tokenizer
from sprint.methods.sprint import SprintPruner
from sprint.methods.perplexity_greedy import PerplexityGreedyPruner
from sprint.methods.shortgpt import ShortGPTPruner
from sprint.model.checkpoint import save_pruned
from sprint.measure.table import LatencyTable
from sprint.model.modeling_sprint import decoder_layers, set_removed
from sprint.methods import SUBLAYER_METHODS, PruneConfig
from sprint.methods.driver import prune_model
from sprint.model.sublayers import SublayerView

from helpers import random_ids as tokens

FAMS = list(FAMILIES)
LATENCY = LatencyTable(device="cpu", model="tiny", prompt_len=8, gen_len=4, dense_s=1.0, t_attn_s=0.05, t_mlp_s=0.08)
REMOVED = [(0, "attn"), (1, "mlp"), (2, "attn"), (2, "mlp")]


def layer_outputs(model, ids):
    """Output of every decoder layer, from forward hooks on the model's own forward (and its loss)."""
    outs = []
    hooks = [lay.register_forward_hook(lambda m, a, out: outs.append(out[0] if isinstance(out, tuple) else out))
             for lay in decoder_layers(model)]
    try:
        with torch.inference_mode():
            res = model(input_ids=ids, labels=ids, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    return outs, res


def view_walk(view, ids, skip=()):
    """Decoder-layer outputs and the mean NLL by the sublayer view: embed, apply every sublayer not in skip."""
    X, outs = view.embed(ids), []
    for s in range(view.num_sublayers):
        if s not in skip:
            X = view.apply(s, X)
        if s % 2 == 1:
            outs.append(X)
    return outs, view.nll(X, ids)


# -- the sublayer view ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMS)
def test_view_matches_model_forward(family):
    """Dense: each layer output of the view = the model's hidden state, the view's NLL = the model's loss;
    batch_size 2 over 5 windows exercises captured masks/rotary args for two batch shapes."""
    model = tiny_model(family, 3)
    ids = tokens(5, 12)
    hooked, res = layer_outputs(model, ids)
    view = SublayerView(model, batch_size=2)
    outs, nll = view_walk(view, ids)
    for i, x in enumerate(outs[:-1]):  # hidden_states[i + 1] is layer i's output (the last one is normed)
        torch.testing.assert_close(x, res.hidden_states[i + 1], atol=1e-5, rtol=1e-5)
    for x, h in zip(outs, hooked):
        torch.testing.assert_close(x, h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(view.model.model.norm(outs[-1]), res.hidden_states[-1], atol=1e-5, rtol=1e-5)
    assert nll == pytest.approx(res.loss.item(), rel=1e-5)
    ids = tokens(3, 7, seed=2)  # the same view at another sequence length: its own mask and rotary arguments
    assert view_walk(view, ids)[1] == pytest.approx(layer_outputs(model, ids)[1].loss.item(), rel=1e-5)


@pytest.mark.parametrize("family", FAMS)
def test_view_skip_matches_saved_checkpoint(family, tmp_path):
    """Pruned: the view with sublayers skipped = the saved checkpoint loaded with trust_remote_code (layer outputs,
    loss), and differs from the dense model."""
    model = tiny_model(family, 3)
    ids = tokens(3, 10, seed=1)
    dense_loss = layer_outputs(model, ids)[1].loss.item()
    set_removed(model, REMOVED)
    out = save_pruned(model, tiny_tokenizer(), tmp_path / "ckpt", {"method": "test", "removed": []})
    loaded = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert type(loaded).__name__.startswith("Sprint")
    hooked, res = layer_outputs(loaded, ids)
    view = SublayerView(model, batch_size=2)
    outs, nll = view_walk(view, ids, skip={2 * layer + (kind == "mlp") for layer, kind in REMOVED})
    for x, h in zip(outs, hooked):
        torch.testing.assert_close(x, h, atol=1e-5, rtol=1e-5)
    assert nll == pytest.approx(res.loss.item(), rel=1e-5)
    assert abs(nll - dense_loss) > 1e-3


# -- ζ̃ and ζ (Eq. 5) ----------------------------------------------------------------------------------------------
def explicit_problem(family, layers, ids, s, d):
    """From a fresh copy of the model, by hooks: X_ref (dense output of layer d//2), and with only s removed the
    input Ẑ of d's down_proj, the MLP's residual input Y and the pruned output X̂ of layer d//2 (all float64)."""
    model = tiny_model(family, layers)
    layer = d // 2
    dense, _ = layer_outputs(model, ids)
    set_removed(model, [(s // 2, ("attn", "mlp")[s % 2])])
    grabbed = {}
    mlp = decoder_layers(model)[layer].mlp
    h1 = mlp.down_proj.register_forward_hook(lambda m, a, out: grabbed.update(z=a[0], down=out))
    try:
        pruned, _ = layer_outputs(model, ids)
    finally:
        h1.remove()
    x_hat = pruned[layer].double().reshape(-1, pruned[layer].shape[-1])
    z = grabbed["z"].double().reshape(-1, grabbed["z"].shape[-1])
    y = x_hat - grabbed["down"].double().reshape(x_hat.shape)
    x_ref = dense[layer].double().reshape(x_hat.shape)
    w = mlp.down_proj.weight.detach().double()
    return x_ref, x_hat, z, y, w


def library_scores(family, layers, ids, tune_ratio=1.0):
    model = tiny_model(family, layers)
    pruner = SprintPruner(SublayerView(model, batch_size=4), ids, LATENCY, variant="sprint-e",
                          tune_ratio=tune_ratio, progress=False)
    with torch.inference_mode():
        scores = pruner._walk(pruner.candidates(), tuned=True, cache=False)
        for sc in scores.values():  # the tuned rows, wherever the pruner keeps them (in the score or spilled)
            sc.weight = pruner.tuned_rows(sc)
    return scores


@pytest.mark.parametrize("family", FAMS)
def test_sensitivities_against_explicit_least_squares(family):
    """ζ̃ = ||X̂ − X||/||X|| with the sublayer removed; ζ and the tuned rows = float64 lstsq; ζ ≤ ζ̃."""
    layers, ids = 3, tokens(12, 24)  # 288 tokens for a 64-wide MLP: a well-posed least-squares problem
    scores = library_scores(family, layers, ids)
    assert sorted(scores) == list(range(2 * layers - 1))
    for s in (0, 1, 2, 3, 4):  # attention (tuned MLP of its own layer) and MLP (tuned MLP one layer up)
        d = s + 1 if s % 2 == 0 else s + 2
        sc = scores[s]
        assert sc.tuned == d
        x_ref, x_hat, z, y, w = explicit_problem(family, layers, ids, s, d)
        ref_norm = x_ref.norm()
        assert sc.pseudo == pytest.approx(((x_hat - x_ref).norm() / ref_norm).item(), rel=1e-4)
        sol = torch.linalg.lstsq(z, x_ref - y, driver="gelsd").solution  # [I, H]
        zeta = ((y + z @ sol - x_ref).norm() / ref_norm).item()
        assert sc.sensitivity == pytest.approx(zeta, rel=1e-3, abs=1e-6)
        assert sc.sensitivity <= sc.pseudo + 1e-9
        assert sorted(sc.rows.tolist()) == list(range(w.shape[0]))  # c = 1: every row improves
        torch.testing.assert_close(sc.weight, sol.T[sc.rows].to(sc.weight.dtype),  # rows kept in the model's dtype
                                   atol=2e-3 * sol.abs().max().item(), rtol=1e-3)
    assert all(sc.sensitivity <= sc.pseudo + 1e-9 for sc in scores.values())


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_partial_tuning_picks_brute_force_rows(family):
    """tune_ratio < 1: the rows tuned are the top ceil(c·H) by Σ_j |W_ij|·||Ẑ_j||₂, each solved by lstsq; the
    other rows keep their weights."""
    layers, ids, ratio = 3, tokens(12, 24), 0.25
    scores = library_scores(family, layers, ids, tune_ratio=ratio)
    for s in (0, 1, 2):
        d = s + 1 if s % 2 == 0 else s + 2
        sc = scores[s]
        x_ref, x_hat, z, y, w = explicit_problem(family, layers, ids, s, d)
        col_norm = torch.tensor([z[:, j].norm() for j in range(z.shape[1])], dtype=torch.float64)
        row_score = torch.stack([(w[i].abs() * col_norm).sum() for i in range(w.shape[0])])
        k = math.ceil(ratio * w.shape[0])
        picked = set(torch.topk(row_score, k).indices.tolist())
        assert set(sc.rows.tolist()) <= picked and len(sc.rows) >= k - 1
        sol = torch.linalg.lstsq(z, x_ref - y, driver="gelsd").solution
        w_new = w.clone()
        w_new[sorted(picked)] = sol.T[sorted(picked)]
        zeta = ((y + z @ w_new.T - x_ref).norm() / x_ref.norm()).item()
        assert sc.sensitivity == pytest.approx(zeta, rel=1e-3, abs=1e-6)
        assert sc.pseudo > sc.sensitivity


def test_removal_writes_the_tuned_rows():
    """After one SPRINT step the model's down_proj holds the lstsq rows and its own forward gives ζ."""
    layers, ids = 3, tokens(12, 24)
    model = tiny_model("llama", layers)
    pruner = SprintPruner(SublayerView(model, batch_size=4), ids, LATENCY, variant="sprint", beta=100,
                          progress=False)
    (removal,) = pruner.step()
    s = 2 * removal.layer + (removal.kind == "mlp")
    d = 2 * removal.tuned_layer + 1
    x_ref, x_hat, z, y, w = explicit_problem("llama", layers, ids, s, d)
    sol = torch.linalg.lstsq(z, x_ref - y, driver="gelsd").solution
    got = decoder_layers(model)[d // 2].mlp.down_proj.weight.detach().double()
    torch.testing.assert_close(got, sol.T, atol=2e-3 * sol.abs().max().item(), rtol=1e-3)
    pruned, _ = layer_outputs(model, ids)  # the model's own forward, s removed, tuned weights in place
    x_new = pruned[d // 2].double().reshape(x_ref.shape)
    assert removal.sensitivity == pytest.approx(((x_new - x_ref).norm() / x_ref.norm()).item(), rel=1e-3)


# -- baselines against brute force ---------------------------------------------------------------------------------
def brute_ppl(family, layers, ids, removed):
    model = tiny_model(family, layers)
    set_removed(model, removed)
    with torch.inference_mode():
        return math.exp(model(input_ids=ids, labels=ids).loss.item())


def kind_of(s):
    return s // 2, ("attn", "mlp")[s % 2]


@pytest.mark.parametrize("family", FAMS)
def test_shortgpt_block_influence_and_pick(family):
    layers, ids = 4, tokens(4, 12)
    model = tiny_model(family, layers)
    hooked, res = layer_outputs(model, ids)
    h = list(res.hidden_states[:-1]) + [hooked[-1]]  # the last hidden state is normed: take the layer's output
    expected = [1 - torch.nn.functional.cosine_similarity(h[i], h[i + 1], dim=-1).mean().item() for i in range(layers)]
    pruner = ShortGPTPruner(SublayerView(model, batch_size=3), ids, LATENCY, progress=False)
    assert pruner.block_influence() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    order = sorted(range(layers), key=expected.__getitem__)
    for want in order[:2]:
        removals = pruner.step()
        assert {(r.layer, r.kind) for r in removals} == {(want, "attn"), (want, "mlp")}


@pytest.mark.parametrize("family", FAMS)
def test_sleb_greedy_is_brute_force_and_keeps_ends(family):
    layers, ids = 5, tokens(3, 12)
    model = tiny_model(family, layers)
    pruner = PerplexityGreedyPruner(SublayerView(model, batch_size=2), ids, LATENCY, unit="layer", progress=False)
    assert sorted({s // 2 for s in pruner.admissible()}) == list(range(1, layers - 1))
    removed = []
    for _ in range(layers - 2):  # every removable layer, one at a time
        brute = {lay: brute_ppl(family, layers, ids, removed + [(lay, "attn"), (lay, "mlp")])
                 for lay in range(1, layers - 1) if (lay, "attn") not in removed}
        lib = pruner.perplexities()
        assert {u[0] // 2: v for u, v in lib.items()} == pytest.approx(brute, rel=1e-4)
        best = min(brute, key=brute.get)
        assert {(r.layer, r.kind) for r in pruner.step()} == {(best, "attn"), (best, "mlp")}
        removed += [(best, "attn"), (best, "mlp")]
    assert not pruner.units()
    assert {r.layer for r in pruner.removed} == set(range(1, layers - 1))  # first and last layers kept


@pytest.mark.parametrize("family", FAMS)
def test_blockpruner_greedy_is_brute_force(family):
    layers, ids = 3, tokens(3, 12)
    model = tiny_model(family, layers)
    pruner = PerplexityGreedyPruner(SublayerView(model, batch_size=2), ids, LATENCY, unit="sublayer", progress=False)
    removed = []
    for _ in range(3):
        brute = {s: brute_ppl(family, layers, ids, removed + [kind_of(s)])
                 for s in range(2 * layers) if kind_of(s) not in removed}
        lib = pruner.perplexities()
        assert {u[0]: v for u, v in lib.items()} == pytest.approx(brute, rel=1e-4)
        best = min(brute, key=brute.get)
        (r,) = pruner.step()
        assert (r.layer, r.kind) == kind_of(best)
        removed.append(kind_of(best))


# -- every method, every family --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("method", SUBLAYER_METHODS)
def test_every_method_prunes_every_family(method, family):
    model = tiny_model(family, 3)
    ids = tokens(4, 16)
    pruner = prune_model(model, ids, LATENCY, PruneConfig(method=method, target_speedup=1.1, alpha=2, beta=2),
                         progress=False)
    assert pruner.removed and LATENCY.speedup(*pruner.counts()) >= 1.1
    assert sorted((r.layer, r.kind) for r in pruner.removed) == [tuple(x) for x in model.config.sprint_removed]
    if method == "sleb":
        assert {r.layer for r in pruner.removed}.isdisjoint({0, 2})
    if method.startswith("sprint"):
        assert (2, "mlp") not in [(r.layer, r.kind) for r in pruner.removed]
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)


# -- CLI: CUDA on a CPU-only machine, storage dtypes -------------------------------------------------------------------
@pytest.fixture
def cli_inputs(tmp_path, tiny_model_dir, monkeypatch):
    import json

    monkeypatch.setenv("SPRINT_MLFLOW", "0")
    model = tiny_model_dir("llama", layers=3)
    calib = tmp_path / "calib.pt"
    torch.save(tokens(4, 16), calib)
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"dense_s": 1.0, "t_attn_s": 0.05, "t_mlp_s": 0.08}))
    return ["prune", "--model", str(model), "--calibration", str(calib), "--latency", str(latency),
            "--target-speedup", "1.15", "--alpha", "2", "--beta", "2"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_prune_on_cuda_without_a_gpu_is_a_one_line_error(cli_inputs, tmp_path, capsys):
    from sprint.pipeline.cli import main

    code = main(cli_inputs + ["--method", "sprint", "--device", "cuda", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == "sprint prune: error: --device cuda: no CUDA device is available"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("store", ["bfloat16", "float16"])
def test_prune_with_store_dtype(cli_inputs, tmp_path, store):
    import json

    from sprint.pipeline.cli import main

    out = tmp_path / "out"
    assert main(cli_inputs + ["--method", "sprint", "--device", "cpu", "--store-dtype", store,
                              "--output", str(out)]) == 0
    record = json.loads((out / "pruning.json").read_text())
    assert record["params"]["store_dtype"] == store and record["removed"]
