"""``metabridge.cli.app``: the entry of earlier releases (a typer application), kept so code
and tests that invoke it keep working; it hands every argument to :func:`metabridge.cli.main`."""

from __future__ import annotations

import warnings

try:
    import typer
except ImportError as exc:  # typer is no dependency of metabridge any more
    raise ImportError(
        "metabridge.cli.app (deprecated) needs typer: pip install typer; or call metabridge.cli.main(argv) instead."
    ) from exc

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
def _forward(ctx: typer.Context) -> None:
    """Every argument goes to :func:`metabridge.cli.main`."""
    from . import main

    warnings.warn(
        "metabridge.cli.app is deprecated; call metabridge.cli.main(argv) instead.", DeprecationWarning, stacklevel=2
    )
    raise typer.Exit(main(list(ctx.args)))
