"""The ``cxrmap`` command line: one Typer app, one module per group of commands.

Each module in :data:`COMMAND_MODULES` defines ``register(app)``, which adds its commands. Heavy imports
(torch, models) happen inside the commands, so ``cxrmap --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.exceptions import TyperException

from cxrmap.core.citation import PAPER
from cxrmap.core.errors import CxrmapError

COMMAND_MODULES = (
    "phantom",
    "index",
    "models",
    "training",
    "pipeline",
    "reproduce",
    "predict",
    "export",
    "serve",
    "annotate",
    "doctor",
)

app = typer.Typer(
    name="cxrmap",
    help=f"COVID-19 infection maps and detection from chest X-rays, after {PAPER.short}, doi:{PAPER.doi}.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"cxrmap.cli.{_name}").register(app)


def main() -> None:
    """Entry point of the console script: user errors (bad options included) print ``error: ...``, exit 2."""
    try:
        code = app(standalone_mode=False)
    except CxrmapError as error:
        _fail(str(error))
    except TyperException as error:  # usage errors (unknown option, bad value, missing argument)
        ctx = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help(), err=True)
            sys.exit(2)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _fail(f"{error.format_message()}{hint}")
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    sys.exit(2)
