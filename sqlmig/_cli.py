"""The ``sqlmig`` command: parse the arguments, run the command, give the exit code.

Each command (:mod:`sqlmig._commands`) calls the :class:`~sqlmig.MigrationRunner`
method of the same name and prints the result through :mod:`sqlmig._console`
(``new`` calls :func:`sqlmig._scaffold.new_migration`). Step lines come from
the ``on_step`` callback of the call; the steps' own log records (loggers below
``sqlmig``, such as ``sqlmig.migrations``) show at INFO, the library's own
records under ``-v`` (but its record of each step, which carries
``record.migration``: the step line shows it); only the command line attaches a
handler to the ``sqlmig`` logger.
Errors are one line on stderr (the traceback too under ``-v``); the exit code
is the error's entry in :data:`EXIT_CODES`, 130 on Ctrl-C, 0 when done.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from ._commands import COMMANDS
from ._console import Output, logging_to
from ._errors import (
    ChecksumMismatch,
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    DirtyDatabase,
    HistoryMismatch,
    IrreversibleMigration,
    LockTimeout,
    MigrationFailed,
    MigrationSourceError,
    MissingMigration,
    OutOfOrderMigration,
    PermissionDenied,
    SchemaDrift,
    SqlmigError,
    UsageError,
)
from ._fleet_commands import add_all_options
from .config import CONFIG_VAR, URL_VAR, checked_lock_timeout, find_config, project_imports

__all__ = ["EXIT_CODES", "build_parser", "exit_code", "main"]

#: The exit code of each error, the most specific class first; any other error exits 1.
EXIT_CODES: tuple[tuple[type[SqlmigError], int], ...] = (
    (MigrationSourceError, 2),
    (ConfigError, 2),
    (UsageError, 2),
    (ChecksumMismatch, 3),
    (MissingMigration, 3),
    (HistoryMismatch, 3),
    (OutOfOrderMigration, 3),
    (DirtyDatabase, 3),
    (SchemaDrift, 3),
    (LockTimeout, 4),
    (DatabaseUnavailable, 5),
    (PermissionDenied, 5),
    (DatabaseError, 5),
    (MigrationFailed, 1),
    (IrreversibleMigration, 1),
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _globals(parser: argparse.ArgumentParser, default: Any) -> None:
    """The options every command takes, before or after the command name."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log every detail; print the traceback of an error",
    )
    parser.add_argument(
        "--url",
        default=default,
        metavar="URL",
        help=f"database URL (beats {URL_VAR} and the config file)",
    )
    parser.add_argument(
        "--env",
        default=default,
        metavar="NAME",
        help="environment [tool.sqlmig.env.NAME] (default: $SQLMIG_ENV)",
    )
    parser.add_argument(
        "--config",
        default=default,
        metavar="FILE",
        help=f"config file holding [tool.sqlmig] (default: ${CONFIG_VAR}, else "
        "the nearest pyproject.toml with [tool.sqlmig], here or above)",
    )
    parser.add_argument(
        "--dir",
        default=default,
        metavar="DIR",
        help="migrations folder or package (beats the config file)",
    )
    parser.add_argument(
        "--metadata",
        default=default,
        action="append",
        metavar="MODULE:ATTR",
        help="the models' MetaData for check and new --autogenerate, e.g. myapp.db:metadata; "
        "repeat for several (beats the config file)",
    )
    parser.add_argument(
        "--lock-timeout",
        default=default,
        type=_seconds,
        metavar="SECONDS",
        help="how long to wait for another runner's lock",
    )


def _seconds(text: str) -> float:
    try:
        return checked_lock_timeout(float(text))
    except (ValueError, ConfigError) as exc:
        detail = exc.message.removeprefix("lock_timeout ") if isinstance(exc, ConfigError) else ""
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds" + (f" ({detail})" if detail else "")
        ) from None


def _script_options(parser: argparse.ArgumentParser) -> None:
    """``--sql`` and its options: the script of the steps, written without connecting."""
    parser.add_argument(
        "--sql",
        action="store_true",
        help="print the steps' SQL as a script to review and apply; connect to nothing",
    )
    parser.add_argument(
        "--from",
        dest="from_version",
        metavar="VERSION",
        help="with --sql: the version taken as applied (default: none)",
    )
    parser.add_argument(
        "--dialect",
        metavar="NAME",
        help="with --sql and no URL: the database to write for (sqlite, postgresql, mysql, "
        "mariadb)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sqlmig`` command."""
    parser = _Parser(prog="sqlmig", description="Database migrations on SQLAlchemy Core.")
    parser.add_argument("--version", action="version", version=f"sqlmig {__version__}")
    _globals(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _globals(sub, argparse.SUPPRESS)
        return sub

    upgrade = command("upgrade", "apply pending migrations (all, or up to TARGET)")
    upgrade.add_argument("target", nargs="?", metavar="TARGET")
    upgrade.add_argument(
        "--dry-run", action="store_true", help="show each pending step and its SQL; change nothing"
    )
    _script_options(upgrade)
    add_all_options(upgrade)
    downgrade = command("downgrade", "undo every migration above TARGET ('base': all)")
    downgrade.add_argument("target", metavar="TARGET")
    _script_options(downgrade)
    add_all_options(downgrade)
    command("rollback", "undo the most recently applied migration")
    status = command("status", "show applied, pending, changed, missing, failed")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_all_options(status)
    command("verify", "fail (exit 3) if the history and the files disagree")
    command("repair", "accept edited files, forget failed rows and rows whose file is gone")
    command("baseline", "mark every migration up to VERSION applied, running none").add_argument(
        "version", metavar="VERSION"
    )
    command("stamp", "record VERSION as applied without running it").add_argument(
        "version", metavar="VERSION"
    )
    command("unstamp", "remove VERSION's history row without running down()").add_argument(
        "version", metavar="VERSION"
    )
    command("check", "fail (exit 3) if steps are pending or the database differs from the models")
    new = command("new", "write the next migration file from a template")
    new.add_argument("name", metavar="NAME")
    kind = new.add_mutually_exclusive_group()
    kind.add_argument(
        "--autogenerate",
        action="store_true",
        help="fill up() and down() with the changes that make the database match the models",
    )
    kind.add_argument(
        "--sql",
        action="store_true",
        help="write a .sql file (-- migrate:up and -- migrate:down sections) instead of Python",
    )
    return parser


def exit_code(exc: SqlmigError) -> int:
    """The command's exit code for ``exc``: its entry in :data:`EXIT_CODES`, else 1."""
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 1)


@contextmanager
def _packages_from_here() -> Iterator[None]:
    """As ``python -m`` does, let packages in the current directory be imported.

    A migrations source named ``svc.migrations`` is then found in ``./svc``
    whether the command runs as ``sqlmig`` or ``python -m sqlmig``. The
    directory leaves ``sys.path`` again when the command is done.
    """
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, here)
        importlib.invalidate_caches()
    try:
        yield
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _project(args: argparse.Namespace) -> Path | None:
    """The folder of the config file the command reads: the project's modules import from it."""
    try:
        found = find_config(getattr(args, "config", None))
    except SqlmigError:  # the command itself reports it
        return None
    return None if found is None else found.parent


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sqlmig`` with ``argv`` (default: the process arguments); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    out = Output(bool(args.verbose), sys.stdout, sys.stderr)
    with logging_to(out) as progress, _packages_from_here(), project_imports(_project(args)):
        try:
            return COMMANDS[args.command](args, out, progress)
        except SqlmigError as exc:
            out.error(exc)
            return exit_code(exc)
        except KeyboardInterrupt:
            out.console.end_open_line()
            out.errors.line("sqlmig: interrupted: run 'sqlmig status' to see what was applied")
            return 130
        except Exception as exc:  # anything else: still one line, exit 1
            out.error(exc)
            return 1
