"""``python -m tensorpot``: the same as the ``tensorpot`` command."""

import sys

from tensorpot.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
