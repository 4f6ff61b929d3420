"""Two measurements of the same checkpoints' speedups side by side: do they agree within their 95% CIs?

    sprint speedup ... --output a.json; sprint speedup ... --output b.json
    python scripts/compare_speedups.py a.json b.json

Prints one Markdown row per model (both estimates with their CIs, the difference, whether the CIs overlap and
whether each estimate lies in the other's CI) and exits 1 if any pair's CIs do not overlap.
"""

from __future__ import annotations

import json
import sys


def main(a: str, b: str) -> int:
    first, second = (json.load(open(p))["models"] for p in (a, b))
    print("| model | first [95% CI] | second [95% CI] | difference | CIs overlap | each in the other's CI |")
    print("|---|---|---|---|---|---|")
    ok = True
    for name in first.keys() & second.keys():
        (x, (xl, xh)), (y, (yl, yh)) = ((m["measured_speedup"], m["measured_speedup_ci"]) for m in (first[name], second[name]))
        overlap = xl <= yh and yl <= xh
        ok &= overlap
        label = name if name == "dense" else f"{first[name]['method']} x{first[name]['target_speedup']:g}"
        print(f"| {label} | {x:.3f} [{xl:.3f}, {xh:.3f}] | {y:.3f} [{yl:.3f}, {yh:.3f}] | {100 * (y / x - 1):+.1f}% "
              f"| {'yes' if overlap else 'NO'} | {'yes' if xl <= y <= xh and yl <= x <= yh else 'no'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
