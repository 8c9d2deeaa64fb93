"""Benchmarks: each public module's ``main`` is ``metabridge bench NAME`` (``compare``'s is
``metabridge compare``); results go to ``bench/results/``. Modules whose names start with
``_`` are the helpers and worker processes they share."""
