"""SPRINT pipeline: model -> calibration -> latency profile -> pruning -> evaluation -> report.

    snakemake --profile workflow/profiles/default                  # the embedded CPU default (params.yaml)
    snakemake --profile workflow/profiles/slurm --configfile workflow/config/paper.yaml

Every rule calls the `sprint` CLI; the science lives in the `sprint` package. See workflow/README.md.
"""

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


# params.yaml is the default configuration; a file given with --configfile replaces it (it must be complete), so
# that the paper's model table is not merged into the embedded default's.
if not workflow.overwrite_configfiles:

    configfile: "params.yaml"


try:
    validate(config, "workflow/schemas/params.schema.yaml")
except WorkflowError as err:
    cause = err.__context__  # the jsonschema ValidationError: name the offending key, not the schema path
    where = ".".join(map(str, getattr(cause, "absolute_path", []))) or "top level"
    raise WorkflowError(f"invalid configuration at {where}: {getattr(cause, 'message', err)}") from None


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/speedup.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/dvc.smk"


rule all:
    input:
        RESULTS.report,


onstart:
    open_pipeline_run(config)


onsuccess:
    close_pipeline_run("FINISHED")
    record_in_dvc()


onerror:
    close_pipeline_run("FAILED")
