"""The float64 Cholesky factorisation's throughput against its width, on one thread in CPU seconds (issue 26: why the
plan's benchmark times it apart at min(I, 8192), sprint.methods.plan.FACTOR_WIDTH; numbers in docs/memory.md).

    .venv/bin/python scripts/cholesky_throughput.py [--widths 1024 2048 4096 8192 14336]
"""

import argparse
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 14336])
    args = p.parse_args()
    torch.set_num_threads(1)
    for n in args.widths:
        a = torch.randn(n, n, dtype=torch.float64)
        g = a @ a.T / n + torch.eye(n, dtype=torch.float64)
        del a
        torch.linalg.cholesky(g[:256, :256])  # warm-up
        best = float("inf")
        for _ in range(3 if n <= 4096 else 1):
            t0 = time.process_time()
            torch.linalg.cholesky(g)
            best = min(best, time.process_time() - t0)
        print(f"n = {n}: {best:.3f} CPU s, {n**3 / 3 / best / 1e9:.1f} GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
