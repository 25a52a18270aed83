"""The benchmarks' shared pieces live in the package (``tensorpot.benchmarking.peers``)."""

from tensorpot.benchmarking.peers import *  # noqa: F403
from tensorpot.benchmarking.peers import (  # noqa: F401
    PEERS,
    build_flashcart,
    build_mace,
    flashcart_available,
    flashcart_batch,
    flashcart_call,
    ictp_call,
    ictp_model,
    load_frames,
    mace_available,
    mace_call,
    peak_memory_mib,
    peak_rss_mib,
    reset_peak_rss,
    time_interleaved,
)
