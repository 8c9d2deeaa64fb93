"""``python -m metabridge`` runs the command line (same as the ``metabridge`` script)."""

import sys

from metabridge.cli import main

if __name__ == "__main__":
    sys.exit(main())
