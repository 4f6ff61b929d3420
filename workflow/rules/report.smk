# Stage 6, report over the metrics files the DAG made (and their runs' pruning records, latency tables and
# speedups; leftovers of an earlier configuration under results/ stay out): tables (mean ± std over seeds), figures and the Snakemake benchmarks of every
# stage -> results/report.md and results/report/ (CSVs, PNGs)


def all_metrics() -> list:
    dense = [f"results/{m}/metrics/dense.json" for m in MODELS]
    pruned = [f"results/{m}/metrics/{meth}/seed{s}/{point}.json" for m in MODELS for meth, point in POINTS for s in SEEDS]
    return dense + pruned


rule report:
    input:
        code=stage_files("report"),
        metrics=all_metrics(),
        speedups=[f"results/{m}/speedup.json" for m in MODELS] if SPEEDUPS == "together" else [],
        pruned=sorted({prune_job_output(m, meth, s, point) for m in MODELS for meth, point in POINTS for s in SEEDS}),
    output:
        md="results/report.md",
        folder=directory("results/report"),
    params:
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    shell:
        "sprint report --results results --metrics {input.metrics:q} --output {output.md:q} > {log:q} 2>&1"
