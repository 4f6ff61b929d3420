# Stage 5, evaluation: zero-shot accuracy (tasks by lm-eval name), WikiText-2 perplexity and that of the held-out
# corpora of evaluate.heldout_ppl (same windows) for the dense model and every pruned checkpoint.
# With latency.speedups: apart, also the measured speedup: the checkpoint as from_pretrained loads it is timed
# against the dense model in interleaved rounds (the latency protocol, at the latency table's prompt / generation
# lengths), and the dense model against a second copy of itself, a check of the protocol on every run.  With
# latency.speedups: together the speedup rule times them all in one job instead (speedup.smk).
# -> results/{model}/metrics/dense.json, results/{model}/metrics/{method}/seed{seed}/{point}.json (point: x{target}
# of a sublayer method, the setting of a weights method)
# The task subsets use evaluate.seed, the same for every model, method and pruning seed.


def evaluate_opts() -> str:
    e = EVALUATE
    opts = [f"--tasks {','.join(e['tasks'])}", f"--seed {e['seed']}", f"--ppl-seq-len {e['ppl_seq_len']}",
            f"--batch-size {e['batch_size']}"]
    if e.get("limit") is not None:
        opts.append(f"--limit {e['limit']}")
    if e.get("ppl_max_windows") is not None:
        opts.append(f"--ppl-max-windows {e['ppl_max_windows']}")
    if e.get("heldout_ppl"):  # absent or empty: the command (and so every existing job) is unchanged
        opts.append(f"--heldout-ppl {','.join(e['heldout_ppl'])}")
    timing = [protocol_opts()] if SPEEDUPS == "apart" else []
    return " ".join(opts + timing + ([MIRROR_OPT] if MIRROR_OPT else []))


def timed_apart(wildcards) -> dict:
    """evaluate's latency input when each job times its own checkpoint (latency.speedups: apart)."""
    return {"latency": RESULTS.latency(wildcards.model)} if SPEEDUPS == "apart" else {}


def latency_opt(wildcards, input) -> str:
    return f"--latency {shlex.quote(input.latency)}" if SPEEDUPS == "apart" else ""


rule evaluate_dense:
    input:
        unpack(timed_apart),
        code=stage_files("evaluate_dense"),
        model=model_dir("{model}"),
        datasets=DATASETS,
    output:
        RESULTS.metrics("{model}", "dense"),
    params:
        model=model_opts,
        opts=evaluate_opts(),
        latency=latency_opt,
        env=lambda wc: model_tag(wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
        **planned_resources("evaluate"),
    log:
        RESULTS.log("evaluate", "{model}", "dense"),
    benchmark:
        RESULTS.benchmark("evaluate", "{model}", "dense")
    shell:
        "{params.env} sprint evaluate {params.model} {params.opts} {params.latency}"
        " --output {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(timed_apart),
        code=stage_files("evaluate"),
        pruned=lambda wc: prune_job_output(wc.model, wc.method, wc.seed, wc.point),
        model=model_dir("{model}"),
        datasets=DATASETS,
    output:
        RESULTS.metrics("{model}", "{method}", "{seed}", "{point}"),
    params:
        checkpoint=lambda wc: RESULTS.pruned(wc.model, wc.method, wc.seed, wc.point),
        dense=lambda wc: model_arg(wc.model),
        device=lambda wc: MODELS[wc.model]["device"],
        dtype=lambda wc: MODELS[wc.model]["dtype"],
        opts=evaluate_opts(),
        latency=latency_opt,
        env=lambda wc: model_tag(wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
        **planned_resources("evaluate"),
    log:
        RESULTS.log("evaluate", "{model}", "{method}", "{seed}", "{point}"),
    benchmark:
        RESULTS.benchmark("evaluate", "{model}", "{method}", "{seed}", "{point}")
    shell:
        "{params.env} sprint evaluate --model {params.checkpoint:q} --device {params.device} --dtype {params.dtype}"
        " {params.opts} {params.latency} --dense-model {params.dense:q} --output {output:q}"
        " > {log:q} 2>&1"
