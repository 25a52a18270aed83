"""The child process of :func:`tensorpot.benchmarking.harness.run_in_child`."""

import sys

from tensorpot.benchmarking.harness import child_main

if __name__ == "__main__":
    child_main(sys.argv[1])
