"""The CUDA paths on a tiny model against the CPU (run by scripts/gpu_check.sh; see there).

Everything is built here: a tiny random llama (tests/conftest.py), calibration tokens, a hand-written latency
table and a synthetic data mirror, so the check needs no network and no data.  Exit 1 on the first difference.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from pathlib import Path

import torch

from sprint.model.checkpoint import load_pruned
from sprint.measure.evaluate import evaluate_to_file
from sprint.methods.driver import PruneConfig, prune_to_checkpoint
from sprint.measure.sparse_kernels import use_sparse_kernels
from sprint.model.sublayers import SublayerView
from sprint.model.tiny import save_tiny_model, tiny_model
from sprint.methods.wanda import wanda_prune

DEV = os.environ.get("GPU_CHECK_DEVICE", "cuda")
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def synthetic_mirror(root: Path) -> Path:
    words = [f"w{i}" for i in range(60)] + list("abcdefghij")
    rng = random.Random(0)
    text = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    (root / "wikitext2").mkdir(parents=True)
    (root / "benchmarks").mkdir()
    for split in ("test", "valid"):
        (root / "wikitext2" / f"wiki.{split}.tokens").write_text("\n".join(text(40) for _ in range(60)))
    arc = [{"question": text(8), "choices": [text(3) for _ in range(4)], "label": rng.randrange(4)} for _ in range(24)]
    boolq = [{"passage": text(20), "question": text(6), "label": rng.randrange(2)} for _ in range(24)]
    for name, docs in (("arc_easy", arc), ("boolq", boolq)):
        (root / "benchmarks" / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    return root


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    model_dir = tmp / "tiny"
    save_tiny_model(model_dir, "llama", 6)
    calib = tmp / "calib.pt"
    torch.save(torch.randint(3, 90, (16, 24), generator=torch.Generator().manual_seed(0)), calib)
    latency = tmp / "latency.json"
    latency.write_text(json.dumps({"dense_s": 1.0, "t_attn_s": 0.05, "t_mlp_s": 0.08, "prompt_len": 8, "gen_len": 4}))
    mirror = synthetic_mirror(tmp / "mirror")

    if DEV == "cuda":
        print("profile (CUDA event timing)", flush=True)
        from sprint.measure.protocol import Protocol
        from sprint.measure.profile import profile_latency
        from sprint.model.loading import load_model

        net, _ = load_model(str(model_dir), device="cuda", dtype="float32")
        table = profile_latency(net, str(model_dir), Protocol(prompt_len=32, gen_len=64, warmup=2, min_rounds=6,
                                                              max_rounds=12, max_spread=0.5), fraction=0.34)
        check("cuda" in table.device.lower() or "nvidia" in table.device.lower() or table.device != "cpu",
              f"profile ran on the GPU ({table.device})")
        check(table.dense_s > 0 and table.t_attn_s > 0 and table.t_mlp_s > 0, f"positive latencies {table}")
        del net

    print("prune: cpu fp32 (reference), then", DEV, "fp32 and bf16", flush=True)
    runs = {}
    for name, device, dtype in (("cpu", "cpu", "float32"), ("fp32", DEV, "float32"), ("bf16", DEV, "bfloat16")):
        out = tmp / f"pruned-{name}"
        cfg = PruneConfig(method="sprint", target_speedup=1.3, alpha=2, beta=3)
        runs[name] = (out, prune_to_checkpoint(str(model_dir), str(calib), str(latency), cfg, str(out),
                                               device=device, dtype=dtype)[1.3])
    ref = runs["cpu"][1]["removed"]
    key = lambda r: (r["layer"], r["kind"], r["tuned_layer"])  # noqa: E731
    for name, rel in (("fp32", 1e-3), ("bf16", 5e-2)):
        got = runs[name][1]["removed"]
        check([key(r) for r in got] == [key(r) for r in ref], f"{name}: same removals as cpu {[key(r) for r in ref]}"
              f" (got {[key(r) for r in got]})")
        check(all(close(a["sensitivity"], b["sensitivity"], rel) for a, b in zip(got, ref)),
              f"{name}: sensitivities within {rel:g} of cpu")

    print('load with device_map="auto", forward, generate', flush=True)
    ids = torch.randint(3, 90, (2, 16), generator=torch.Generator().manual_seed(1))
    out32 = runs["fp32"][0]
    cpu_model, _ = load_pruned(out32, device="cpu", dtype=torch.float32, carried_code=True)
    with torch.inference_mode():
        cpu_logits = cpu_model(ids).logits
        kw = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0, use_cache=True)
        cpu_gen = cpu_model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        for dtype, atol in ((torch.float32, 1e-3), (torch.bfloat16, 0.15)):
            gpu, _ = load_pruned(out32, device="auto" if DEV == "cuda" else DEV, dtype=dtype, carried_code=True)
            dev = next(gpu.parameters()).device
            check(dev.type == DEV, f"{dtype}: loaded on {dev}")
            logits = gpu(ids.to(dev)).logits.float().cpu()
            scale = cpu_logits.abs().max().item()
            check(torch.allclose(logits, cpu_logits, atol=atol * scale, rtol=0),
                  f"{dtype}: logits within {atol:g}x scale of cpu (max diff {(logits - cpu_logits).abs().max():.3g})")
            if dtype == torch.float32:
                gen = gpu.generate(ids.to(dev), attention_mask=torch.ones_like(ids).to(dev), **kw).cpu()
                check(torch.equal(gen, cpu_gen), "fp32: greedy generation (KV cache) equals cpu")
            del gpu

    print("evaluate (accuracy and perplexity) on", DEV, "vs cpu", flush=True)
    metrics = {}
    for device in ("cpu", DEV):
        metrics[device] = evaluate_to_file(
            str(out32), tmp / f"metrics-{device}.json", tasks=["arc_easy", "boolq"], limit=None, seed=0,
            mirror=str(mirror), ppl_seq_len=32, ppl_max_windows=8, batch_size=4, latency=None, device=device,
            dtype="float32")
    a, b = metrics["cpu"], metrics[DEV]
    check(close(a["wikitext2_ppl"], b["wikitext2_ppl"], 1e-4), f"perplexity {b['wikitext2_ppl']:.6g} vs cpu "
          f"{a['wikitext2_ppl']:.6g}")
    for task in a["tasks"]:
        diff = sum(x != y for x, y in zip(a["tasks"][task]["correct"], b["tasks"][task]["correct"]))
        check(diff <= 1, f"{task}: per-document correctness differs on {diff} documents (<= 1 allowed: near-ties)")

    print("2:4 sparse kernels (sprint.measure.sparse_kernels) on", DEV, "fp16", flush=True)
    sparse = tiny_model("llama", 2, hidden_size=128, intermediate_size=256, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=32).to(DEV, torch.float16)
    ids = torch.randint(0, sparse.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0)).to(DEV)
    wanda_prune(SublayerView(sparse, batch_size=4), ids, 0.5, "2:4", progress=False)
    with torch.no_grad():
        before = sparse(ids).logits.float()
        kernels = use_sparse_kernels(sparse, "auto")
        after = sparse(ids).logits.float()
    print(f"  kernels: {kernels}", flush=True)
    if DEV == "cuda" and torch.cuda.get_device_capability() >= (8, 0):
        check(kernels["kernels"].startswith("semi-structured") and kernels["sparse_linears"] == 14,
              "every 2:4 linear runs on semi-structured sparse kernels")
    check(torch.allclose(before, after, atol=2e-2, rtol=2e-2),
          f"logits with the kernels equal the stored model's (max diff {(before - after).abs().max().item():.2e})")

    if failures:
        print(f"gpu_check: {len(failures)} difference(s) from the CPU result:", *failures, sep="\n  ")
        return 1
    print(f"gpu_check: all CUDA paths agree with the CPU ({torch.cuda.get_device_name() if DEV == 'cuda' else DEV})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
