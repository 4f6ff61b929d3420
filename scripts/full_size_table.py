"""The full-size prediction table of issue 26: Llama-3-8B and Llama-3-70B (published config shapes) at 128 x 2048
calibration tokens in bf16, before (``layout="legacy"``: the code before issue 26) and after (``"bounded"``), against
one 80 GB GPU and 256 GiB of host memory.  No download: the shapes are those of the published config.json files.

    .venv/bin/python scripts/full_size_table.py [--gpu-flops 2e14] [--solve-flops 5e11]

The step time uses given throughputs (no GPU here): --gpu-flops for the sublayers (an A100/H100 at ~60% of its bf16
peak), a tenth of it for the fp32 Gram statistics, --solve-flops for the host's float64 Cholesky, 2e9 elements/s
for the float64 accumulation and 20 GB/s host<->device.
"""

from __future__ import annotations

import argparse

from transformers import LlamaConfig

from sprint.methods import PruneConfig
from sprint.methods.plan import GiB, Throughput, plan_run, shapes_from_config

SHAPES = {
    "Llama-3-8B": (dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                        vocab_size=128256, num_hidden_layers=32), 1.0),
    "Llama-3-70B": (dict(hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8,
                         vocab_size=128256, num_hidden_layers=80), 0.75),  # c = 0.75 as paper.yaml / their scripts
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gpu-flops", type=float, default=2e14)
    p.add_argument("--solve-flops", type=float, default=5e11)
    args = p.parse_args()
    tp = Throughput(args.gpu_flops, args.gpu_flops, args.gpu_flops / 10, args.solve_flops, "assumed", "given",
                    accumulate=2e9, transfer=2e10)
    host_budget, gpu_budget = 256 * GiB, 80e9
    print("| model | layout | GPU weights | GPU peak | host peak | largest host terms | local disk | first step | "
          "fits 1x80 GB + 256 GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (sizes, c) in SHAPES.items():
        shapes = shapes_from_config(LlamaConfig(**sizes, tie_word_embeddings=False))
        cfg = PruneConfig(method="sprint", target_speedup=1.5, tune_ratio=c)
        rows = [("before (legacy)", dict(layout="legacy")), ("after", dict(layout="bounded"))]
        if shapes.params * 2 > gpu_budget:
            rows.append(("after, --offload memory", dict(layout="bounded", offload="memory")))
            rows.append(("after, --offload memory --host-memory 256GiB",
                         dict(layout="bounded", offload="memory", host_memory=256 * GiB)))
            rows.append(("after, --offload file --host-memory 256GiB",
                         dict(layout="bounded", offload="file", host_memory=256 * GiB)))
        if name == "Llama-3-8B":
            rows.append(("after, --host-memory 48GiB", dict(layout="bounded", host_memory=48 * GiB)))
        for label, kw in rows:
            plan = plan_run(shapes, 128, 2048, cfg, device="cuda", dtype="bfloat16", throughput=tp, model=name, **kw)
            top = sorted(plan.host.items(), key=lambda kv: -kv[1])[:3]
            fits = plan.host_peak <= host_budget and plan.gpu_peak <= gpu_budget
            print(f"| {name} | {label} | {plan.gpu['weights'] / GiB:.1f} GiB | {plan.gpu_peak / GiB:.1f} GiB | "
                  f"{plan.host_peak / GiB:.1f} GiB | " + ", ".join(f"{k} {v / GiB:.1f}" for k, v in top) +
                  f" | {plan.disk_total / GiB:.0f} GiB | {plan.step_time:.0f} s | {'yes' if fits else 'no'} |")


if __name__ == "__main__":
    main()
