"""Benchmarks of tensorpot against other codes: the harness (cases, interleaved timing, peak
memory in child processes, tables with ratios) and the adapters of the codes a user can
pip-install; ``tensorpot bench`` runs the comparison with MACE and FlashCart."""
