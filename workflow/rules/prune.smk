# Stage 4, pruning.  Sublayer methods (prune.methods): one job per (model, method, seed) prunes once to the largest
# target speedup and saves a checkpoint at every target on the way (the greedy removal order does not depend on the
# target) -> results/{model}/pruned/{method}/seed{seed}/x{target}/.  One-shot methods (prune.weights: Wanda and
# SparseGPT zero weights; prune.slicing: SliceGPT slices the hidden width): one job per (model, method, seed,
# setting), with no latency table (their speed is measured by evaluate)
# -> results/{model}/pruned/{method}/seed{seed}/{setting}/.  Every checkpoint folder holds its pruning.json.  A sublayer
# job journals every removal outside its output folder (results/{model}/journals/...), which Snakemake deletes when
# the job is killed: the rerun (the profile's retries, or the next snakemake call) resumes from the journal.


def prune_outputs(wildcards, output) -> str:
    """The checkpoint of every target, in the job's folder."""
    return " ".join(shlex.quote(RESULTS.pruned(wildcards.model, wildcards.method, wildcards.seed, f"x{t}"))
                    for t in TARGET_NAMES)


rule prune:
    input:
        code=stage_files("prune"),
        model=model_dir("{model}"),
        calibration="data/calibration/{model}/seed{seed}.pt",
        latency=RESULTS.latency("{model}"),
    output:
        directory(RESULTS.pruned("{model}", "{method}", "{seed}")),
    wildcard_constraints:
        method=methods_regex("sublayer"),
    params:
        model=model_opts,
        targets=" ".join(TARGET_NAMES),
        outputs=prune_outputs,
        journal=lambda wc: RESULTS.journal(wc.model, wc.method, wc.seed),
        alpha=PRUNE["alpha"],
        beta=PRUNE["beta"],
        tune_ratio=lambda wc: MODELS[wc.model]["tune_ratio"],
        reference=lambda wc: MODELS[wc.model]["reference"],
        distance=lambda wc: MODELS[wc.model]["distance"],
        tie_break=lambda wc: MODELS[wc.model]["tie_break"],
        batch_size=PRUNE["batch_size"],
        ppl_windows=f"--ppl-windows {PRUNE['ppl_windows']}" if PRUNE.get("ppl_windows") else "",
        env=lambda wc: model_tag(wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
        **planned_resources("prune"),
    log:
        RESULTS.log("prune", "{model}", "{method}", "{seed}"),
    benchmark:
        RESULTS.benchmark("prune", "{model}", "{method}", "{seed}")
    shell:
        "{params.env} sprint prune {params.model} --calibration {input.calibration:q} --latency {input.latency:q}"
        " --method {wildcards.method} --seed {wildcards.seed} --target-speedup {params.targets}"
        " --alpha {params.alpha} --beta {params.beta} --tune-ratio {params.tune_ratio}"
        " --reference {params.reference} --distance {params.distance} --tie-break {params.tie_break}"
        " --batch-size {params.batch_size}"
        " {params.ppl_windows} --journal {params.journal:q}"
        " --output {params.outputs} > {log:q} 2>&1"


rule prune_at_setting:
    input:
        code=stage_files("prune_at_setting"),
        model=model_dir("{model}"),
        calibration="data/calibration/{model}/seed{seed}.pt",
    output:
        directory(RESULTS.pruned("{model}", "{method}", "{seed}", "{setting}")),
    wildcard_constraints:
        method=methods_regex(*ONE_SHOT),
    params:
        model=model_opts,
        setting=lambda wc: " ".join(f"--{k.replace('_', '-')} {v}" for k, v in setting_options(wc.setting, REGISTRY[wc.method].kind).items()),
        batch_size=PRUNE["batch_size"],
        env=lambda wc: model_tag(wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
        **planned_resources("prune"),
    log:
        RESULTS.log("prune", "{model}", "{method}", "{seed}", "{setting}"),
    benchmark:
        RESULTS.benchmark("prune", "{model}", "{method}", "{seed}", "{setting}")
    shell:
        "{params.env} sprint prune {params.model} --calibration {input.calibration:q} --method {wildcards.method}"
        " --seed {wildcards.seed} {params.setting} --batch-size {params.batch_size} --output {output:q} > {log:q} 2>&1"
