"""Benchmarks: each public module ``NAME`` is ``metabridge bench NAME`` (``compare`` is
``metabridge compare``): a typed settings model ``CONFIG`` (a
:class:`~metabridge.config.CommandConfig`, whose field descriptions are the options' help)
and ``run(config)``, which writes its results and the resolved ``config.json`` into
``config.out`` (``runs/bench/NAME`` by default). Modules whose names start with ``_`` are
the helpers and worker processes they share."""
