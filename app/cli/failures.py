"""How a command that cannot go on ends: one message on stderr and the documented exit code.

Typer (0.29) runs on its own copy of click and exports only `BadParameter` of its exceptions, so
`click.ClickException` never matches what it raises: a mistyped UUID, an unknown option or a missing
argument escaped as a traceback. Everything click reports to a user (usage errors, a file it cannot
open) shares BadParameter's base ClickException, so that base is what `main` catches; each becomes
InvalidInput (exit 4), said in one line.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.markup import escape

from app.cli.context import errors
from app.core.config_needs import HOW_TO_SET
from app.core.errors import InvalidInput, OpsdeskError, describe
from integrations.errors import IntegrationError, NotConfigured

# BadParameter -> UsageError -> ClickException, in click and in Typer's copy of it alike
USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[2]


def fail(exc: OpsdeskError | IntegrationError) -> NoReturn:
    """A known error: its code and message (user text escaped, not read as markup), its details;
    a missing setting also says how to set it."""
    info = describe(exc)
    errors.print(f"[red]{info.code}[/red]: {escape(info.message)}", soft_wrap=True)
    details = dict(info.details)
    if isinstance(exc, NotConfigured):  # an integration found a setting missing: say how to set it
        details.setdefault("where", HOW_TO_SET)
    for key, value in details.items():
        errors.print(f"  {escape(str(key))}: {escape(str(value))}", soft_wrap=True)
    sys.exit(info.exit_code)


def usage_failed(exc: Exception) -> NoReturn:
    """A usage error as one line: which command, what was wrong, where its help is. A group called
    without its command (`opsdesk approvals`) has shown its help already (Typer prints it while
    raising); it ends with the same exit code."""
    exit_code = describe(InvalidInput("")).exit_code
    if type(exc).__name__ == "NoArgsIsHelpError":
        sys.exit(exit_code)
    ctx = getattr(exc, "ctx", None)
    # pydantic's "Value error, " prefix tells a person nothing
    message = (exc.format_message() if hasattr(exc, "format_message") else str(exc)).replace("Value error, ", "")
    where = f"{ctx.command_path}: " if ctx is not None else ""
    hint = f" (`{ctx.command_path} --help` shows its usage)" if ctx is not None else ""
    info = describe(InvalidInput(" ".join(f"{where}{message}".split()) + hint))
    errors.print(f"[red]{info.code}[/red]: {escape(info.message)}", soft_wrap=True, highlight=False)
    sys.exit(info.exit_code)
