"""Plan against measurement (issue 26): prune a model for a few steps and compare each memory term, the peak RSS,
the spill disk and the step time with what ``sprint plan`` predicted for the same configuration.

    .venv/bin/python scripts/plan_check.py --shape llama-3-8b --layers 2 --n 4 --seq-len 256 --dtype bfloat16 \
        --method sprint --beta 1 --tune-ratio 0.01 --steps 1 [--output check.json] [--tolerance 0.10]
    .venv/bin/python scripts/plan_check.py --model data/models/smollm2-135m --calibration cal.pt --steps 1

``--shape`` builds a random-weight model with the exact layer shapes (hidden, intermediate, heads, GQA, vocabulary)
of Llama-3-8B or Llama-3-70B (or of any config.json given as a folder) and ``--layers`` decoder layers; ``--model``
loads a real model.  The throughputs are measured in this process just before pruning (the machine may be shared:
a throughput taken elsewhere would not describe it).  Measured terms: the runtime and the weights as RSS growth
(after the imports; after building or loading the model), the pruner's own terms as the most bytes each held
(``SprintPruner.peak_terms``; Gram statistics: the most TuningStats alive at once), the rest (walk, tuning and
chunk temporaries) as the peak RSS minus all of those, the total as the process's peak RSS (VmHWM) while pruning
(restarted after the model is built and the throughput measured: /proc/self/clear_refs), the disk as
the bytes the spill files held, the time as the first step's wall time.  Exits 1 when a total or the step time is
off by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch  # noqa: F401 - everything a prune imports, before the runtime is measured
import transformers  # noqa: F401
from transformers import LlamaForCausalLM  # noqa: F401

import sprint.methods.driver  # noqa: F401
import sprint.methods.sprint  # noqa: F401
from sprint.methods import PruneConfig, tuning
from sprint.methods.plan import GiB, benchmark, plan_run, shapes_from_config

SHAPES = {  # the published configs' layer shapes (config.json of meta-llama/Meta-Llama-3-8B and -70B)
    "llama-3-8b": dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                       vocab_size=128256, rope_theta=500000.0, max_position_embeddings=8192, rms_norm_eps=1e-5),
    "llama-3-70b": dict(hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8,
                        vocab_size=128256, rope_theta=500000.0, max_position_embeddings=8192, rms_norm_eps=1e-5),
    "tiny": dict(hidden_size=64, intermediate_size=192, num_attention_heads=4, num_key_value_heads=2,
                 vocab_size=256, max_position_embeddings=512),  # the dry run's shape
}


def rss(field: str = "VmRSS") -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def build_random(shape: str, layers: int, dtype, seed: int = 0, device: str = "cpu"):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**SHAPES[shape], num_hidden_layers=layers, tie_word_embeddings=False,
                      attn_implementation="sdpa", bos_token_id=1, eos_token_id=2)
    cfg.dtype = dtype
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg).to(dtype)  # in the target dtype before any memory is allocated
    model = model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.02)
            else:
                p.fill_(1.0)
    with torch.device(device):
        model.model.rotary_emb = type(model.model.rotary_emb)(cfg)  # its buffers were left empty by to_empty
    return model.eval(), cfg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=tuple(SHAPES))
    p.add_argument("--model", help="a real model folder instead of --shape")
    p.add_argument("--calibration", help=".pt calibration file (default: random ids of --n x --seq-len)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--method", default="sprint")
    p.add_argument("--alpha", type=int, default=8)
    p.add_argument("--beta", type=int, default=5)
    p.add_argument("--tune-ratio", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tolerance", type=float, default=0.10)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time the throughputs and the steps in wall seconds (default) or in this process's CPU "
                        "seconds on one thread (a machine shared with other jobs: its load stretches wall time, not "
                        "CPU time; one thread, because idle OpenMP workers spin and bill CPU time for no work)")
    p.add_argument("--fit-seconds", type=float, default=None,
                   help="choose the largest calibration (n = 128, 64, ... windows of --seq-len) whose predicted first "
                        "step fits this many seconds (random models only)")
    p.add_argument("--report-only", action="store_true", help="exit 0 whatever the errors (a dry run's mechanics)")
    p.add_argument("--output")
    args = p.parse_args(argv)
    if args.clock == "cpu":
        torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    runtime = rss()
    if args.model:
        from sprint.model.loading import load_config, load_model

        model, _ = load_model(args.model, device=args.device, dtype=args.dtype)
        config = load_config(args.model)
    else:
        model, config = build_random(args.shape, args.layers, dtype, device=args.device)
    gpu_weights = torch.cuda.memory_allocated() if args.device.startswith("cuda") else 0
    with torch.no_grad():  # a safetensors load may map the file lazily: touch every weight, as pruning will
        for t in model.parameters():
            t.sum()
    weights_rss = rss() - runtime
    shapes = shapes_from_config(config)
    t0 = time.perf_counter()
    first = model.model.layers[0]  # time the model's own first layer: no second copy of a large one
    modules = {"attn": first.self_attn, "mlp": first.mlp, "norm": first.input_layernorm,
               "norm2": first.post_attention_layernorm, "rope": model.model.rotary_emb}
    tp = benchmark(shapes, args.seq_len, args.batch_size, "cuda" if args.device.startswith("cuda") else "cpu",
                   args.dtype, tokens=args.batch_size * args.seq_len, layer=modules, clock=args.clock)
    bench_s = time.perf_counter() - t0
    L = config.num_hidden_layers
    if args.fit_seconds and not args.calibration:
        for n_try in (128, 96, 64, 48, 32, 24, 16, 12, 8, 4, 2, 1):
            probe = PruneConfig(method=args.method, target_speedup=1.5, alpha=args.alpha, beta=args.beta,
                                tune_ratio=args.tune_ratio, batch_size=args.batch_size)
            if plan_run(shapes, n_try, args.seq_len, probe, device=args.device, dtype=args.dtype,
                        throughput=tp).step_time <= args.fit_seconds:
                args.n = n_try
                break
        print(f"calibration chosen to fit {args.fit_seconds:.0f} s: {args.n} x {args.seq_len} tokens")
    if args.calibration:
        tokens = torch.load(args.calibration, weights_only=True)
    else:
        tokens = torch.randint(3, config.vocab_size, (args.n, args.seq_len), generator=torch.Generator().manual_seed(0))
    n, seq_len = tokens.shape
    table_args = dict(dense_s=1.0, t_attn_s=0.3 / L, t_mlp_s=0.3 / L)  # every removal is a step; 2L - 1 reach 2.2x
    cfg = PruneConfig(method=args.method, target_speedup=1.0 / (1.0 - 0.3 / L * (2 * L - 1.5)), alpha=args.alpha,
                      beta=args.beta, tune_ratio=args.tune_ratio, batch_size=args.batch_size)
    plan = plan_run(shapes, n, seq_len, cfg, device=args.device, dtype=args.dtype, throughput=tp,
                    model=args.model or f"{args.shape} ({args.layers} layers)")
    if not args.model:
        plan.counts["load_peak_host"] = 0  # random weights are made where they run: no from_pretrained load peak

    from sprint.measure.table import LatencyTable
    from sprint.methods.driver import prune_model

    table = LatencyTable("plan-check", "any", 0, 0, **table_args)
    step_times: list[float] = []
    holder = {}

    class Enough(Exception):
        pass

    cpu_mark = [0.0]

    def on_step(pruner, step_s, elapsed):
        holder["pruner"] = pruner
        if step_s is not None:
            if args.clock == "cpu":  # this step's CPU seconds (the first: from the start of prune_model)
                step_s, cpu_mark[0] = time.process_time() - cpu_mark[0], time.process_time()
            step_times.append(step_s)
            if len(step_times) >= args.steps:
                raise Enough

    tuning.LIVE["peak"] = tuning.LIVE["now"]
    tuning.LIVE["factorizations"], tuning.LIVE["factor_flops"] = 0, 0.0
    import gc

    gc.collect()
    load_peak = rss("VmHWM")  # the model's load (and the benchmark's layer), apart from pruning
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # restart VmHWM: the peak below is the pruning's
    except OSError:
        load_peak = None
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    cpu_mark[0] = time.process_time()
    try:
        prune_model(model, tokens, table, cfg, progress=False, on_step=on_step)
    except Enough:
        pass
    pruner = holder["pruner"]
    peak = rss("VmHWM")
    measured = {"runtime": runtime, "weights": weights_rss}
    terms = getattr(pruner, "peak_terms", {})
    for k in ("embeddings", "checkpoints", "held activations", "gram statistics"):
        if k in plan.host:
            measured[k] = terms.get(k, 0)
    if "gram statistics" in measured:
        measured["gram statistics"] = tuning.LIVE["peak"] * pruner._stats_bytes
    rest_keys = [k for k in plan.host if k not in measured]
    measured["rest: " + " + ".join(rest_keys)] = peak - sum(measured.values())
    predicted = {k: plan.host[k] for k in plan.host if k not in rest_keys}
    predicted["rest: " + " + ".join(rest_keys)] = sum(plan.host[k] for k in rest_keys)
    disk = {"dense references": pruner.dense_ref.bytes_written if hasattr(pruner, "dense_ref") else 0}
    rows = []
    for k in predicted:
        rows.append((k, predicted[k], measured[k]))
    rows.append(("host peak (pruning)", sum(plan.host.values()), peak))
    if args.model and load_peak:
        rows.append(("host peak (loading, benchmark)", plan.counts["load_peak_host"], load_peak))
    if plan.disk.get("dense references"):
        rows.append(("disk: dense references", plan.disk["dense references"], disk["dense references"]))
    if args.device.startswith("cuda"):
        rows.append(("gpu peak", plan.gpu_peak, torch.cuda.max_memory_allocated()))
        rows.append(("gpu weights", plan.gpu.get("weights", 0), gpu_weights))
    print(plan.table())
    print(f"\nplan vs measured: {plan.model}, {n}x{seq_len} tokens, {args.dtype}, {args.method} "
          f"(alpha {args.alpha}, beta {args.beta}, c {args.tune_ratio}); throughput measured in {bench_s:.1f}s: "
          f"attn {tp.attn / 1e9:.1f}, mlp {tp.mlp / 1e9:.1f}, stats {tp.stats / 1e9:.1f}, "
          f"fp64 solve {tp.solve / 1e9:.1f}, fp64 factorisation {tp.factor_rate / 1e9:.1f} GFLOP/s")
    print(f"| term | plan | measured | error |\n|---|---|---|---|")
    bad = []
    for k, pr, me in rows:
        err = (pr - me) / me if me else (0.0 if not pr else float("inf"))
        print(f"| {k} | {pr / GiB:.3f} GiB | {me / GiB:.3f} GiB | {err:+.1%} |")
        if k in ("host peak (pruning)", "gpu peak") and abs(err) > args.tolerance:
            bad.append(k)
    step_pred = plan.step_time
    err = (step_pred - step_times[0]) / step_times[0]
    print(f"| first step{' (CPU s)' if args.clock == 'cpu' else ''} | {step_pred:.1f} s | {step_times[0]:.1f} s | {err:+.1%} |")
    if abs(err) > args.tolerance:
        bad.append("first step")
    if plan.step_s.get("solve") and tuning.LIVE["factorizations"]:
        # the plan assumes the most factorisations a singular G can take, each to the end; with the work this data
        # took (a failed factorisation stops at its first non-positive pivot):
        planned = plan.counts["tunings"] * plan.counts["solve_attempts"]
        full = shapes.intermediate**3 / 3
        actual = step_pred + (tuning.LIVE["factor_flops"] - planned * full) / tp.factor_rate
        print(f"| first step, with the factorisation work this data took ({tuning.LIVE['factorizations']} tried, "
              f"{tuning.LIVE['factor_flops'] / full:.2f} of a full one's FLOPs; plan: up to {planned} full) | "
              f"{actual:.1f} s | {step_times[0]:.1f} s | {(actual - step_times[0]) / step_times[0]:+.1%} |")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"plan": plan.to_dict(), "rows": rows, "step_s": step_times, "peak_rss": peak,
                       "throughput_bench_s": bench_s, "bad": bad}, f, indent=1, default=str)
    pruner.close()
    if bad and not args.report_only:
        print(f"plan and measurement disagree by more than {args.tolerance:.0%}: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
