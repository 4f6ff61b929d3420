"""How wide are the two estimators' 95% CIs on recorded timing rounds?  The numbers behind `latency.estimator`.

    python scripts/estimator_widths.py results/<model>/metrics/**/*.json

For each metrics file (its measured speedup's raw per-round ratios) and the first 10 / 15 / 20 / 25 rounds, the
relative CI half-width of the median (order statistics) and of Hodges-Lehmann (Wilcoxon); then the means.
"""

from __future__ import annotations

import json
import statistics
import sys

from sprint.measure.protocol import hodges_lehmann_ci, median_ci

ROUNDS = (10, 15, 20, 25)


def half_width(ci) -> float:
    est, lo, hi = ci
    return max(est - lo, hi - est) / est


def main(paths: list[str]) -> int:
    rows = []
    for path in paths:
        ratios = json.load(open(path))["speedup"]["ratios"]
        cells = []
        for n in (n for n in ROUNDS if len(ratios) >= n):
            med, hl = half_width(median_ci(ratios[:n])), half_width(hodges_lehmann_ci(ratios[:n]))
            rows.append((n, med, hl))
            cells.append(f"n{n}: median ±{100 * med:.1f}% HL ±{100 * hl:.1f}%")
        print(path, " | ".join(cells))
    for n in ROUNDS:
        sel = [(m, h) for k, m, h in rows if k == n]
        if sel:
            print(f"{n} rounds ({len(sel)} files): median ±{100 * statistics.mean(m for m, _ in sel):.1f}%, "
                  f"HL ±{100 * statistics.mean(h for _, h in sel):.1f}%, "
                  f"ratio {statistics.mean(h / m for m, h in sel):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) if len(sys.argv) > 1 else __doc__)
