"""What every ``cascade`` command is built from: the invocation's state and the one error path.

- :class:`Session` is ``ctx.obj``: the global options (``--verbose``) and the consoles. Nothing
  lives at module level, so in-process invocations (tests, ``CliRunner``) never share state.
- :class:`CascadeGroup` is the one error path: whatever a command raises becomes one line on
  stderr and an exit code (2 for usage, 1 for everything else); ``--verbose`` adds the traceback.
- :class:`CascadeCommand` starts the process (redacted streams, logging) when a command runs,
  after its arguments parsed, so ``--help`` and usage errors cost nothing but Typer.
- :class:`CascadeTyper` makes every group and command of these kinds, with plain help: Typer's
  Rich help formatter alone costs about 0.2 s at every start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from rich.console import Console

Function = TypeVar("Function", bound=Callable[..., Any])


@dataclass(frozen=True)
class Session:
    """What the global options chose for this invocation; ``ctx.obj`` of every command."""

    verbose: bool = False

    @cached_property
    def out(self) -> Console:
        """Standard output, for results."""
        from rich.console import Console

        return Console()

    @cached_property
    def err(self) -> Console:
        """Standard error, for errors, progress and logs (so ``--json`` stdout stays JSON)."""
        from rich.console import Console

        return Console(stderr=True)

    def start(self) -> None:
        """What the command, as the application, decides for its process (the library decides none of it):
        every byte out is redacted, configured secrets are known before anything prints, logs go to
        stderr, and dlt does not phone home."""
        from cascade import CascadeError, configure_logging, load_config
        from cascade_cli.output import guard_standard_streams

        guard_standard_streams()
        os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
        try:
            config = load_config()  # registers the configured secrets with the redaction
        except CascadeError:
            config = None  # not swallowed: each command that needs the configuration loads it and reports this
        configure_logging(config.log_format if config else "auto", config.log_level if config else "INFO", force=True)


def session(ctx: typer.Context) -> Session:
    """The invocation's :class:`Session` (a default one for a command invoked without its group)."""
    found = ctx.find_object(Session)
    return found if found is not None else Session()


def report_failure(error: Exception, current: Session) -> int:
    """One clear line on stderr; the exit code: 2 for usage errors, 1 for failed runs and everything else."""
    from rich.markup import escape

    from cascade import (
        CascadeError,
        ConfigurationError,
        SchemaEvolutionError,
        UnknownAssetError,
        ValidationError,
        redact,
        redacted_traceback,
    )

    err = current.err
    if current.verbose:
        err.print(redacted_traceback(error), markup=False, highlight=False, soft_wrap=True, end="")
    lines = redact(str(error)).strip().splitlines() or [""]
    ours = isinstance(error, CascadeError)
    first_line = lines[0] if ours else f"{type(error).__name__}: {lines[0]}".rstrip(": ")
    if not ours and not current.verbose:
        first_line += " (cascade --verbose shows the traceback)"
    err.print(f"[bold red]error:[/] {escape(first_line)}", highlight=False, soft_wrap=True)
    if not current.verbose and isinstance(error, ValidationError | SchemaEvolutionError):
        for line in lines[1:12]:  # their further lines are Cascade's own list: the failing checks or changes
            err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    return 2 if isinstance(error, UnknownAssetError | ConfigurationError) else 1


def _is_click_control(error: Exception) -> bool:
    """Exit, Abort and usage errors of click (or the click that Typer vendors) keep click's handling."""
    return any(kind.__module__.split(".")[0] in ("click", "typer") for kind in type(error).__mro__)


class _BoolHelp:
    """An absent ``--help`` defaults to None, which Typer (0.20 and later) converts through pydantic:
    0.2-0.4 s of imports in every ``cascade CMD --help`` and in commands with only flags (``list``).
    Its default False is a bool, which Typer takes as it is."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None and option.default is None:
            option.default = False
        return option


class CascadeGroup(_BoolHelp, TyperGroup):
    """The one error path: whatever a command raises becomes one line on stderr and an exit code."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (of the click that Typer uses)
        try:
            return super().invoke(ctx)
        except Exception as error:
            if _is_click_control(error):
                raise
            raise typer.Exit(report_failure(error, session(ctx))) from error


class CascadeCommand(_BoolHelp, TyperCommand):
    """A command that starts the process (:meth:`Session.start`) only when it really runs."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (of the click that Typer uses)
        session(ctx).start()
        return super().invoke(ctx)


class CascadeTyper(typer.Typer):
    """A command group of ``cascade``: :class:`CascadeGroup`, :class:`CascadeCommand` and plain help."""

    def __init__(self, *, help: str, **options: Any) -> None:
        options.setdefault("no_args_is_help", True)
        super().__init__(
            cls=CascadeGroup,
            help=help,
            rich_markup_mode=None,
            add_completion=False,
            pretty_exceptions_show_locals=False,  # locals may hold secrets
            **options,
        )

    def command(self, name: str | None = None, **options: Any) -> Callable[[Function], Function]:
        return super().command(name, cls=CascadeCommand, **options)
