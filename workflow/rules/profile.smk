# Stage 3, latency profile of the dense and partially pruned model on this run's device
# -> results/{model}/latency.json (t_MHA and t_MLP for the importance scores and the stopping rule).
# A model with latency_table (base.models) is not profiled: its table is checked and copied (sprint profile --table).
# Runs alone (all local cores): concurrent jobs would distort the timings. A machine too busy for the protocol's
# noise bound (latency.max_spread) fails the job with the spread it saw, after latency.attempts tries; no table is
# written that the protocol does not trust.


def profile_command(wildcards, input) -> str:
    """Measure the table (the model's prompt / generation lengths), or check and copy the model's given table."""
    m = MODELS[wildcards.model]
    if m["latency_table"]:
        return f"--table {shlex.quote(input.table)}"
    lat = m["latency"]
    return (f"--prompt-len {lat['prompt_len']} --gen-len {lat['gen_len']} {protocol_opts()}"
            f" --fraction {lat['fraction']}")


def given_table(wildcards) -> dict:
    table = MODELS[wildcards.model]["latency_table"]
    return {"table": table} if table else {}


rule profile:
    input:
        unpack(given_table),
        code=stage_files("profile"),
        model=model_dir("{model}"),
    output:
        RESULTS.latency("{model}"),
    params:
        model=model_opts,
        command=profile_command,
        env=lambda wc: model_tag(wc.model),
    threads: ALL_CORES
    resources:
        gpu=model_gpus,
        **planned_resources("profile"),
    log:
        RESULTS.log("profile", "{model}"),
    benchmark:
        RESULTS.benchmark("profile", "{model}")
    shell:
        "{params.env} sprint profile {params.model} {params.command} --output {output:q} > {log:q} 2>&1"
