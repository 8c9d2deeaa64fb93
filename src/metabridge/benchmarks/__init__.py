"""Benchmarks runnable as ``metabridge bench NAME``; results go to ``bench/results/``."""
