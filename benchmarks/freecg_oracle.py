"""The worst relative errors of tensorpot's FreeCG and ViSNet against the official FreeCG code and
PyG's ViSNet, with the same randomised weights, in float64 (the oracle tests' cases, printed).

    python benchmarks/freecg_oracle.py

Needs ``../shared/reference`` beside the repository, torch_geometric and e3nn (the dev extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.models.test_visnet import (  # noqa: E402
    ASPIRIN,
    BPA,
    ORACLE_SIZES,
    compare_with_official,
    frames,
    test_official_freecg_oracle_neighbour_cap,
)


def main() -> None:
    cases = {
        "aspirin (rMD17 test_01), 3 frames": (frames(ASPIRIN, 3), ORACLE_SIZES, 0),
        "3BPA (test_300K), 3 frames": (frames(BPA, 3), ORACLE_SIZES, 0),
        "aspirin, max_min vector norm": (
            frames(ASPIRIN, 2),
            {**ORACLE_SIZES, "vecnorm_type": "max_min"},
            1,
        ),
    }
    print("| case | energy, worst relative error | forces, worst error / max force |")
    print("|---|---|---|")
    for name, (structures, sizes, seed) in cases.items():
        e, f = compare_with_official(structures, sizes, seed)
        print(f"| {name} | {e:.1e} | {f:.1e} |")
    test_official_freecg_oracle_neighbour_cap()
    print("neighbour cap (40-atom cluster, 32 kept): within 1e-10 (the test passed)")


if __name__ == "__main__":
    main()
