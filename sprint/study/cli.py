"""``python -m sprint.study plan|run|page FILE``: the study's command line (see :mod:`sprint.study`)."""

from __future__ import annotations

import argparse
import logging
import sys

import sprint.study
from sprint.errors import SprintError
from sprint.study.runner import plan, run
from sprint.study.spec import load_study

log = logging.getLogger("sprint")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sprint.study", description=sprint.study.__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("plan", "run", "page"), help="plan: list the cells, done or to do; run: "
                        "run the missing latency tables and cells in order, committing each (resumes); page: write the "
                        "results page (OUTPUT.md) and the full report from the cells done")
    parser.add_argument("study", help="study file (YAML), e.g. workflow/study/smollm2-cpu.yaml")
    parser.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        study = load_study(args.study)
        if args.action == "plan":
            print("\n".join(plan(study)))
        elif args.action == "page":
            from sprint.study.page import write_page  # pandas and matplotlib: only for the page

            log.info("study: page written to %s", write_page(study))
        else:
            ran = run(study, args.max_cells)
            log.info("study: %d cell(s) run; %s", len(ran), "all done" if all(map(study.done, study.cells()))
                     else "cells remain")
    except SprintError as err:
        print(f"python -m sprint.study: error: {err}", file=sys.stderr)
        return 2
    return 0
