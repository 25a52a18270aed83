"""Child process of ``peers.peak_memory_mib``: one model, peak memory of its calls."""

from __future__ import annotations

import argparse
import json

import torch

from tensorpot.benchmarking import peers as common


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=["ictp"] + [p.key for p in common.PEERS])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--max-L", type=int, default=2)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--max-ell", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = common.load_frames(args.batch)
    if args.peer == "ictp":
        model = common.ictp_model(args.channels, args.max_L, args.correlation, args.max_ell)
        call = common.ictp_call(model, frames)
    else:
        peer = next(p for p in common.PEERS if p.key == args.peer)
        model = peer.build(args.channels, args.max_L, args.correlation, args.max_ell)
        call = peer.call(model, frames)
    call()  # first call allocates lazily built tables; not counted
    before = common.reset_peak_rss()
    for _ in range(args.calls):
        call()
    print(json.dumps({"peak_mib": common.peak_rss_mib() - before}))


if __name__ == "__main__":
    main()
