"""The ``w2s`` group: one clean line for every error instead of a traceback."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from w2s.errors import FieldError, W2SError
from w2s.quiet import quiet_libraries


class _Group(click.Group):
    """Turns errors into one clean line instead of a traceback (usage errors too: click's
    own are four lines with a usage banner)."""

    def main(self, args: Any = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare `w2s`
                click.echo(e.format_message())
                sys.exit(0)
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        if standalone_mode:  # click returns an exit code (ctx.exit) instead of exiting
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FieldError as e:  # a field's path, in this face's words: its flag
            from w2s.cli.requests import CLI_NAMES

            click.echo(f"error: {e.named(CLI_NAMES)}", err=True)
            ctx.exit(2)
        except W2SError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001
            if os.environ.get("W2S_DEBUG"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.echo(f"error: unexpected {type(e).__name__}: {msg} "
                       "(set W2S_DEBUG=1 for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(package_name="w2s")
def cli() -> None:
    """w2s: weak-to-strong search and friends.

    Steer a large frozen BASE model with a small TUNED model and the small UNTUNED model it
    was tuned from: search over the base's samples, scored by
    log pi_tuned(y|x) - log pi_untuned(y|x).
    """
    quiet_libraries()

