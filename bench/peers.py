"""metabridge vs higher vs TorchOpt, one meta-iteration of MAML/FOMAML/ANIL on Conv-4.

Same as ``metabridge bench peers``; see ``metabridge.benchmarks.peers`` for the protocol.
Quick version: ``python bench/peers.py --meta-batch 4 --repeats 2 --shots 1``.
"""

from __future__ import annotations

import typer

from metabridge.benchmarks.peers import main

if __name__ == "__main__":
    typer.run(main)
