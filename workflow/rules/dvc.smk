# One pipeline state for Snakemake and DVC: after a successful Snakemake run, record in dvc.lock every DVC stage
# whose outputs Snakemake now holds up to date (the Snakefile's onsuccess calls record_in_dvc; see
# workflow/README.md). Included by the Snakefile after common.smk.

import os
import subprocess
import sys
from pathlib import Path

from snakemake.logging import logger

DVC_STAGE_ENV = "SPRINT_DVC_STAGE"  # set by dvc.yaml's commands: Snakemake runs inside `dvc repro`


def _pending_outputs() -> set[str] | None:
    """Outputs Snakemake would still (re)make for the default target, from a nested `snakemake --summary`
    (None if it cannot tell)."""
    env = {**os.environ, DVC_STAGE_ENV: "1", "SPRINT_MLFLOW": "0"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--summary", "--nolock", "--cores", "1"], cwd=BASEDIR,
                          env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return None
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    header = next((r for r in rows if r and r[0] == "output_file"), None)
    if header is None or "plan" not in header:
        return None
    plan = header.index("plan")
    return {r[0] for r in rows if r is not header and len(r) > plan and r[plan] != "no update"}


def record_in_dvc() -> None:
    """onsuccess: record in dvc.lock every DVC stage whose outputs Snakemake now holds up to date, so that
    `dvc status` agrees with Snakemake after a run (one pipeline state; see workflow/README.md).

    A stage is recorded when all its outputs exist and none is one Snakemake would still remake (a nested
    `snakemake --summary`): after a partial run (a single target) the stages left to do stay to do for DVC too.
    Skipped inside `dvc repro` (DVC records its own stages), without a DVC repository, and with --configfile (the
    stages of dvc.yaml are generated from params.yaml, not from the run's configuration).  Never fails the pipeline.
    """
    if os.environ.get(DVC_STAGE_ENV) or not (BASEDIR / ".dvc").is_dir() or not (BASEDIR / "dvc.yaml").is_file():
        return
    if workflow.overwrite_configfiles:
        logger.info("dvc.lock not updated: this run's --configfile is not params.yaml, which dvc.yaml reads")
        return
    try:
        pending = _pending_outputs()
        if pending is None:
            raise RuntimeError("`snakemake --summary` failed, so the jobs left to do are unknown")
        from dvc.repo import Repo

        def done(path: str) -> bool:
            return Path(path).exists() and not any(p == path or p.startswith(path.rstrip("/") + "/")
                                                   for p in pending)

        with Repo(str(BASEDIR)) as repo:
            complete = [st for st in repo.index.stages
                        if st.cmd and all(done(os.path.relpath(out.fs_path, BASEDIR)) for out in st.outs)]
            for st in complete:
                repo.commit(st.addressing, force=True)
        logger.info(f"dvc.lock: recorded {len(complete)} DVC stage(s) whose outputs Snakemake holds up to date")
    except Exception as err:  # the pipeline's results stand; only DVC's record of them is missing
        logger.warning(f"dvc.lock not updated ({type(err).__name__}: {err}); `dvc commit -f` records it")
