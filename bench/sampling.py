"""Episode-sampling throughput (5-way 5-shot 15-query); same as ``metabridge bench sampling``."""

from __future__ import annotations

import typer

from metabridge.benchmarks.sampling import main

if __name__ == "__main__":
    typer.run(main)
