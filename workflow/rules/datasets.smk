# Stage 0, datasets: a snapshot of the data every later stage reads -> data/datasets/
# Offline it copies the mirror's WikiText-2 and benchmark files (the CLI then gets --mirror data/datasets);
# online it only records that the Hugging Face hub is the source. DVC tracks the folder.


rule datasets:
    output:
        directory(DATASETS),
    params:
        source=str(MIRROR) if MIRROR else "hub",
    log:
        "results/logs/datasets.log",
    benchmark:
        "results/benchmarks/datasets.tsv"
    localrule: True
    run:
        snapshot_datasets(output[0])
        Path(log[0]).write_text(f"datasets from {params.source} -> {output[0]}\n")
