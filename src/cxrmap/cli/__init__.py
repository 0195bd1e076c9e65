"""The ``cxrmap`` command line: one Typer app, one module per group of commands.

Each module in :data:`COMMAND_MODULES` defines ``register(app)``, which adds its commands. Heavy imports
(torch, models) happen inside the commands, so ``cxrmap --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from cxrmap.core.errors import CxrmapError

COMMAND_MODULES = (
    "phantom",
    "index",
    "models",
    "training",
    "pipeline",
    "predict",
    "export",
    "serve",
    "annotate",
    "doctor",
)

app = typer.Typer(
    name="cxrmap",
    help="COVID-19 infection maps and detection from chest X-rays (Degerli et al., 2021).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"cxrmap.cli.{_name}").register(app)


def main() -> None:
    """Entry point of the console script: user errors print one clear message, exit code 2."""
    try:
        app()
    except CxrmapError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
