# Stage 2, calibration: n seeded random windows of seq_len tokens per (model, seed) (calibration:, or the model's
# own calibration: in base.models) -> data/calibration/{model}/seed{seed}.pt (+ .pt.json with the source and sizes)


rule calibrate:
    input:
        code=stage_files("calibrate"),
        model=model_dir("{model}"),
        datasets=DATASETS,
        source=calibration_inputs,
    output:
        tokens="data/calibration/{model}/seed{seed}.pt",
        meta="data/calibration/{model}/seed{seed}.pt.json",
    params:
        model=lambda wc: model_arg(wc.model),
        source=config["calibration"]["source"],
        n=lambda wc: MODELS[wc.model]["calibration"]["n"],
        seq_len=lambda wc: MODELS[wc.model]["calibration"]["seq_len"],
        mirror=MIRROR_OPT,
        env=lambda wc: model_tag(wc.model),
    log:
        RESULTS.log("calibrate", "{model}", seed="{seed}"),
    benchmark:
        RESULTS.benchmark("calibrate", "{model}", seed="{seed}")
    shell:
        "{params.env} sprint calibrate --model {params.model:q} --source {params.source:q}"
        " --n {params.n} --seq-len {params.seq_len} --seed {wildcards.seed} {params.mirror}"
        " --output {output.tokens:q} > {log:q} 2>&1"
