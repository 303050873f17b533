"""``python -m compression``: the command line (compression/cli/)."""

import sys

from compression.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
