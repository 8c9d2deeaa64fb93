"""``metabridge.cli.app``: the entry of earlier releases (a typer application), kept so code
and tests that invoke it keep working; it hands every argument to :func:`metabridge.cli.main`."""

from __future__ import annotations

import warnings

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
def _forward(ctx: typer.Context) -> None:
    """Every argument goes to :func:`metabridge.cli.main`."""
    from . import main

    warnings.warn("metabridge.cli.app is deprecated; call metabridge.cli.main(argv) instead.",
                  DeprecationWarning, stacklevel=2)
    raise typer.Exit(main(list(ctx.args)))
