"""``python -m metabridge`` runs the command line (same as the ``metabridge`` script)."""

from metabridge.cli import app

if __name__ == "__main__":
    app(prog_name="metabridge")
