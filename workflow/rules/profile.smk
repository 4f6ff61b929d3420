# Stage 3, latency profile of the dense and partially pruned model on this run's device
# -> results/{model}/latency.json (t_MHA and t_MLP for the importance scores and the stopping rule)
# Runs alone (all local cores): concurrent jobs would distort the timings. A machine too busy for the protocol's
# noise bound (latency.max_spread) fails the job with the spread it saw, after latency.attempts tries; no table is
# written that the protocol does not trust.


rule profile:
    input:
        code=stage_files("profile"),
        model=model_dir("{model}"),
    output:
        "results/{model}/latency.json",
    params:
        model=model_opts,
        lat=config["latency"],
        protocol=protocol_opts(),
        env=lambda wc: model_tag(wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
    log:
        "results/logs/profile/{model}.log",
    benchmark:
        "results/benchmarks/profile/{model}.tsv"
    shell:
        "{params.env} sprint profile {params.model} --prompt-len {params.lat[prompt_len]}"
        " --gen-len {params.lat[gen_len]} {params.protocol}"
        " --fraction {params.lat[fraction]} --output {output:q} > {log:q} 2>&1"
