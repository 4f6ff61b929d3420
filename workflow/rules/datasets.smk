# Stage 0, datasets: a snapshot of the data every later stage reads -> data/datasets/
# Offline `sprint datasets` copies the mirror's WikiText-2 and benchmark files (the CLI then gets --mirror
# data/datasets); online it only records that the Hugging Face hub is the source. DVC tracks the folder.


rule datasets:
    input:
        code=stage_files("datasets"),
    output:
        directory(DATASETS),
    params:
        mirror=f"--mirror {shlex.quote(str(MIRROR))}" if MIRROR else "",
    log:
        RESULTS.log("datasets"),
    benchmark:
        RESULTS.benchmark("datasets")
    localrule: True
    shell:
        "sprint datasets {params.mirror} --output {output:q} > {log:q} 2>&1"
