#!/usr/bin/env python3
"""k8s/west/ must be k8s/east/ with the regions' names swapped, file by file.

    python3 scripts/lib/deploy/check_k8s_regions.py

The two cells are built alike; what differs is only which region a name refers to. Swapping
`east` and `west` (both ways, so a cell's references to its peer stay right) in every file
of one folder must give the other folder exactly; a difference is a change made to one
region and forgotten in the other. Standard library only; exit 1 naming each difference.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

K8S = Path(__file__).resolve().parents[3] / "k8s"
SWAP = {"east": "west", "west": "east", "East": "West", "West": "East", "EAST": "WEST", "WEST": "EAST"}


def swapped(text: str) -> str:
    return re.sub("|".join(SWAP), lambda m: SWAP[m.group(0)], text)


def main() -> int:
    east, west = K8S / "east", K8S / "west"
    problems = []
    names = sorted({p.name for p in east.glob("*.yaml")} | {p.name for p in west.glob("*.yaml")})
    for name in names:
        a, b = east / name, west / name
        if not a.is_file() or not b.is_file():
            problems.append(f"{name} is in only one of k8s/east and k8s/west")
            continue
        want = swapped(a.read_text(encoding="utf-8"))
        have = b.read_text(encoding="utf-8")
        if want != have:
            diff = difflib.unified_diff(
                want.splitlines(), have.splitlines(), f"k8s/east/{name} (regions swapped)", f"k8s/west/{name}", lineterm="", n=0
            )
            problems.append("\n".join(list(diff)[:20]))
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"check_k8s_regions: {len(names)} files, {'ok' if not problems else f'{len(problems)} difference(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
