"""ICTP against MACE and FlashCart of the same size on 3BPA: time and peak memory of energy +
forces.

Timing is interleaved in one process (median over repeats); peak memory is measured for each
model in its own fresh process. Prints a Markdown table with the ratios tensorpot / peer; a
peer that is not installed is skipped, and said so. The same measurement is ``tensorpot bench``.

    python benchmarks/ictp_vs_peers.py --channels 8 --max-L 2 --correlation 3 --batch 10
"""

from __future__ import annotations

import argparse

from tensorpot.benchmarking.compare import compare_with_peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--max-L", type=int, default=2)
    parser.add_argument("--max-ell", type=int, default=3)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(compare_with_peers(args.channels, args.max_L, args.max_ell, args.correlation,
                            args.batch, args.repeats, args.threads))  # fmt: skip


if __name__ == "__main__":
    main()
