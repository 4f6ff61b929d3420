# Stage 5, evaluation: zero-shot accuracy, WikiText-2 perplexity and the measured speedup, for the dense model and
# every pruned checkpoint. The speedup times the checkpoint as from_pretrained loads it against the dense model in
# interleaved rounds (the latency protocol, at the latency table's prompt / generation lengths); the dense model is
# timed against a second copy of itself, so its speedup checks the protocol on every run.
# -> results/{model}/metrics/dense.json, results/{model}/metrics/{method}/seed{seed}/x{target}.json
# The task subsets use evaluate.seed, the same for every model, method and pruning seed.


def evaluate_opts() -> str:
    e = EVALUATE
    opts = [f"--tasks {','.join(e['tasks'])}", f"--seed {e['seed']}", f"--ppl-seq-len {e['ppl_seq_len']}",
            f"--batch-size {e['batch_size']}"]
    if e.get("limit") is not None:
        opts.append(f"--limit {e['limit']}")
    if e.get("ppl_max_windows") is not None:
        opts.append(f"--ppl-max-windows {e['ppl_max_windows']}")
    return " ".join(opts + [protocol_opts()] + ([MIRROR_OPT] if MIRROR_OPT else []))


rule evaluate_dense:
    input:
        model=model_dir("{model}"),
        latency="results/{model}/latency.json",
        datasets=DATASETS,
    output:
        "results/{model}/metrics/dense.json",
    params:
        model=model_opts,
        opts=evaluate_opts(),
        env=lambda wc: mlflow_env("evaluate/dense", wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
    log:
        "results/logs/evaluate/{model}/dense.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/dense.tsv"
    shell:
        "{params.env} sprint evaluate {params.model} {params.opts} --latency {input.latency:q}"
        " --output {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        pruned="results/{model}/pruned/{method}/seed{seed}",
        model=model_dir("{model}"),
        latency="results/{model}/latency.json",
        datasets=DATASETS,
    output:
        "results/{model}/metrics/{method}/seed{seed}/x{target}.json",
    params:
        checkpoint=lambda wc, input: f"{input.pruned}/x{wc.target}",
        dense=lambda wc: model_arg(wc.model),
        device=lambda wc: MODELS[wc.model]["device"],
        dtype=lambda wc: MODELS[wc.model]["dtype"],
        opts=evaluate_opts(),
        env=lambda wc: mlflow_env(f"evaluate/{wc.method}/x{wc.target}/seed{wc.seed}", wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
    log:
        "results/logs/evaluate/{model}/{method}/seed{seed}/x{target}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{method}/seed{seed}/x{target}.tsv"
    shell:
        "{params.env} sprint evaluate --model {params.checkpoint:q} --device {params.device} --dtype {params.dtype}"
        " {params.opts} --latency {input.latency:q} --dense-model {params.dense:q} --output {output:q}"
        " > {log:q} 2>&1"
