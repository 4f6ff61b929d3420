"""scripts/gpu_scale_check.sh's dry run (issue 26): the plan-against-measurement check runs end to end on the CPU with
a tiny shape and prints every term, the peaks and the first step's time (the GPU run's 15% verdict needs a GPU)."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dry_run(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PY": os.environ.get("PY", str(REPO / ".venv" / "bin" / "python"))}
    if not Path(env["PY"]).exists():
        import sys

        env["PY"] = sys.executable
    proc = subprocess.run([str(REPO / "scripts" / "gpu_scale_check.sh"), "--dry-run"], capture_output=True,
                          text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in ("| host peak (pruning) |", "| first step |", "| gram statistics |", "| checkpoints |"):
        assert row in proc.stdout
    result = json.loads((tmp_path / "gpu_scale_check_dry.json").read_text())
    assert result["peak_rss"] > 0 and result["step_s"] and result["plan"]["host_peak"] > 0
