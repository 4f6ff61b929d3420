"""Usage: .venv/bin/python scripts/resume_cost.py [MODEL] [CALIBRATION.pt]

What one resume costs on SmolLM2 (fp32, CPU, 8x256, SPRINT, hand table): run A journals 4 steps; run B resumes
from A's first 3 journaled steps and takes step 4. Cost = B's replay + (B's step 4 - A's step 4)."""
import json, os, shutil, sys, tempfile, time
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bit_identity import TABLE, state_sha256
from sprint.methods.driver import PruneConfig, prune_model
from sprint.methods.journal import Journal
from sprint.model.loading import load_model
M = sys.argv[1] if len(sys.argv) > 1 else "data/models/smollm2-135m"
tokens = torch.load(sys.argv[2] if len(sys.argv) > 2 else "cal8x256.pt", weights_only=True)
cfg = PruneConfig(method="sprint", target_speedup=1.2)
class Stop(Exception): pass
def run(journal, steps):
    model, _ = load_model(M, device="cpu", dtype="float32")
    times = []
    def on_step(p, step_s, elapsed):
        times.append((step_s, time.perf_counter()))
        if step_s is not None and len(p.removed) >= steps: raise Stop
    t0 = time.perf_counter()
    try:
        prune_model(model, tokens, TABLE, cfg, progress=False, on_step=on_step, journal=journal)
    except Stop:
        pass
    return times, t0, model
jd = os.path.join(tempfile.gettempdir(), "sprint-resume-cost-journal"); shutil.rmtree(jd, ignore_errors=True)
A, a0, ma = run(Journal(jd, {"x": 1}), 4)
os.remove(f"{jd}/step-0003.pt")
B, b0, mb = run(Journal(jd, {"x": 1}), 4)
setup_a = A[0][1] - a0; setup_b = B[0][1] - b0  # pruner built (+ B's replay)
out = {"A_steps_s": [s for s, _ in A[1:]], "A_setup_s": setup_a, "B_setup_incl_replay_s": setup_b,
       "B_step4_s": B[1][0], "replay_s": setup_b - setup_a, "cost_s": (setup_b - setup_a) + B[1][0] - A[4][0],
       "same_weights": state_sha256(ma) == state_sha256(mb)}
print(json.dumps(out, indent=1))
