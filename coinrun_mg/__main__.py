"""``python -m coinrun_mg`` runs the command-line interface."""

import sys

from coinrun_mg.cli import main

if __name__ == "__main__":
    sys.exit(main())
