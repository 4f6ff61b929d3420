"""Where a result came from: the code's git commit (and whether the tree had uncommitted changes) and the versions
of the packages that shape the numbers.  Recorded in every pruning.json, metrics file, latency table and MLflow run.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "lm-eval", "sprint-prune")  # distribution names


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """``{"git_commit", "git_dirty", "python", "versions": {package: version}}`` of this process's code.

    ``git_commit`` is None when the package is not run from a git checkout (an installed wheel); ``git_dirty``
    says whether tracked files differ from that commit.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "versions": {p.replace("-", "_"): _version(p) for p in PACKAGES},
    }


def flat() -> dict[str, str]:
    """The provenance as flat string tags for MLflow: ``git_commit``, ``git_dirty``, ``version.<package>``."""
    p = provenance()
    tags = {"git_commit": str(p["git_commit"]), "git_dirty": str(p["git_dirty"]), "python": p["python"]}
    tags.update({f"version.{k}": str(v) for k, v in p["versions"].items()})
    return tags
