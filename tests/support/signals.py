"""For tests that interrupt a child process with SIGINT: a shell that starts a job in the background makes
it ignore SIGINT, and children inherit that (Python then never raises KeyboardInterrupt, and the training's
interrupt guard rightly leaves an ignored signal ignored). ``default_sigint`` given as ``preexec_fn`` gives
the child the default disposition, so the test does not depend on how the test run itself was started."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """Restore SIGINT's default disposition (Python then installs its KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
