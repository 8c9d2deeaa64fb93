"""Sinusoid reproduction (Finn et al. 2017, Table 2): ``python bench/sinusoid.py --help``.

Same as ``metabridge bench sinusoid``; see metabridge.benchmarks.sinusoid."""

import typer

from metabridge.benchmarks.sinusoid import main

if __name__ == "__main__":
    typer.run(main)
