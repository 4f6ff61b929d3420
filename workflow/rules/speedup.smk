# Stage 5b (latency.speedups: together; the default is apart, see params.yaml), measured speedups: one job per model times the dense model, a second copy
# of it and every pruned checkpoint (as from_pretrained loads it) in the same interleaved rounds, so the dense model
# is timed once per round for all of them and every ratio is taken under the same conditions; the copy's ratio
# (1 up to noise) checks the protocol on every run.  Runs alone (all local cores), like the profile.
# -> results/{model}/speedup.json


def checkpoints(model: str) -> list:
    return [RESULTS.pruned(model, meth, s, point) for meth, point in POINTS for s in SEEDS]


rule speedup:
    input:
        code=stage_files("speedup"),
        pruned=lambda wc: sorted({prune_job_output(wc.model, meth, s, point) for meth, point in POINTS for s in SEEDS}),
        model=model_dir("{model}"),
        latency=RESULTS.latency("{model}"),
    output:
        RESULTS.speedup("{model}"),
    params:
        checkpoints=lambda wc: " ".join(shlex.quote(c) for c in checkpoints(wc.model)),
        dense=lambda wc: model_arg(wc.model),
        device=lambda wc: MODELS[wc.model]["device"],
        dtype=lambda wc: MODELS[wc.model]["dtype"],
        protocol=protocol_opts(),
        env=lambda wc: model_tag(wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
        **planned_resources("profile"),
    log:
        RESULTS.log("speedup", "{model}"),
    benchmark:
        RESULTS.benchmark("speedup", "{model}")
    shell:
        "{params.env} sprint speedup --checkpoints {params.checkpoints} --dense-model {params.dense:q}"
        " --device {params.device} --dtype {params.dtype} --latency {input.latency:q} {params.protocol}"
        " --output {output:q} > {log:q} 2>&1"
