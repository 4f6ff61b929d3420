"""Background CPU load for checking the latency protocol's noise guard by hand (not used by the pipeline).

    python scripts/cpu_load.py --cores 1                    # one core busy until killed
    python scripts/cpu_load.py --cores 2 --period 1         # both cores busy for 1 s, idle for 1 s, and so on
    python scripts/cpu_load.py --cores 2 --period 1 --for 600

Each of ``--cores`` processes spins in pure Python; with ``--period P`` they spin for P seconds, then sleep for P
seconds, in step. It stops after ``--for`` seconds (default: when killed).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def spin(period: float, until: float) -> None:
    while time.time() < until:
        start = time.time()
        while time.time() - start < (period or 1.0) and time.time() < until:
            pass
        if period:
            time.sleep(max(0.0, min(period, until - time.time())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=1, help="busy processes (default 1)")
    parser.add_argument("--period", type=float, default=0.0, help="seconds on, then as many off; 0 = always on")
    parser.add_argument("--for", dest="duration", type=float, default=float("inf"), help="seconds (default: forever)")
    args = parser.parse_args()
    until = time.time() + args.duration
    procs = [mp.Process(target=spin, args=(args.period, until), daemon=True) for _ in range(args.cores)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
