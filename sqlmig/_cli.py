"""The ``sqlmig`` command: parse the arguments, call the public API, print the result.

Each command calls the :class:`~sqlmig.MigrationRunner` method of the same
name (``new`` calls :func:`sqlmig._scaffold.new_migration`). Step lines come from
the ``on_step`` callback of the call; the steps' own log records (loggers below
``sqlmig``, such as ``sqlmig.migrations``) show at INFO, the library's own
records under ``-v`` (but its record of each step, which carries
``record.migration``: the step line shows it); only this module attaches a
handler to the ``sqlmig`` logger.
Errors are one line on stderr (the traceback too under ``-v``); the exit code
is the error's entry in :data:`EXIT_CODES`, 130 on Ctrl-C, 0 when done.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

from sqlalchemy import make_url

from . import __version__
from ._console import Console, StepLines
from ._database import holds_secret, mask, mask_in, scrub
from ._dryrun import changes_something
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
    SqlmigError,
    UsageError,
)
from ._migration import PlannedStep, Status
from ._runner import MigrationRunner
from ._scaffold import new_migration
from .config import CONFIG_VAR, URL_VAR, checked_lock_timeout, migrations_setting, runner_settings

__all__ = ["EXIT_CODES", "build_parser", "exit_code", "main", "status_json", "status_rows"]

log = logging.getLogger("sqlmig")

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
    (LockTimeout, 4),
    (DatabaseUnavailable, 5),
    (PermissionDenied, 5),
    (DatabaseError, 5),
    (MigrationFailed, 1),
    (IrreversibleMigration, 1),
)
URL_TEXT = re.compile(r"[A-Za-z][\w+.-]*://\S+")
#: Punctuation that ends a sentence after a URL, not the URL itself.
TRAILING = ":;,.)]}'\""
PROGRESS_ABOVE = 3  # show "[n/total]" on a terminal when more steps than this are pending


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
    command("downgrade", "undo every migration above TARGET ('base': all)").add_argument(
        "target", metavar="TARGET"
    )
    command("rollback", "undo the most recently applied migration")
    command("status", "show applied, pending, changed, missing, failed").add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
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
    command("new", "write the next migration file from a template").add_argument(
        "name", metavar="NAME"
    )
    return parser


def exit_code(exc: SqlmigError) -> int:
    """The command's exit code for ``exc``: its entry in :data:`EXIT_CODES`, else 1."""
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 1)


# -- output ----------------------------------------------------------------


def _masked_urls(text: str) -> str:
    """Every URL-like word of ``text`` that holds a secret, masked on its parsed form."""

    def masked(match: re.Match[str]) -> str:
        url = match[0].rstrip(TRAILING)  # "... to URL: reason": the colon is not the URL's
        shown = mask(url) if holds_secret(url) else url
        return shown + match[0][len(url) :]

    return URL_TEXT.sub(masked, text)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)


class Output:
    """Where the command writes; every URL it shows has its secrets masked.

    Lines sqlmig wrote hold masked URLs already; the URLs this command knows
    (``--url``, ``SQLMIG_URL``, the configured one) are masked wherever they
    are spelled out in full. A message sqlmig did not write (an unexpected
    error, each message in a ``-v`` traceback) is withheld whole if it still
    holds a password: never a substring replaced.
    """

    def __init__(self, verbose: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.verbose = verbose
        self.stdout = stdout
        self.stderr = stderr
        self.urls: list[str] = []
        self.console = Console(stdout)

    def hide(self, url: object) -> None:
        """Remember ``url`` (a string), to mask it in everything printed."""
        if isinstance(url, str) and url:
            self.urls.append(url)

    def clean(self, text: str) -> str:
        """``text`` with every known URL, and any URL holding a secret, masked."""
        for url in self.urls:
            text = mask_in(text, url)
        return _masked_urls(text)

    def foreign(self, text: str) -> str:
        """A message sqlmig did not write, safe to show (withheld if it holds a password)."""
        for url in self.urls:
            text = scrub(text, url)
        return self.clean(text)

    def line(self, text: str = "") -> None:
        self.console.line(self.clean(text))

    def error(self, exc: BaseException) -> None:
        self.console.end_open_line()
        if self.verbose:
            trace = "".join(traceback.format_exception(exc))
            for link in _chain(exc):
                shown = str(link)
                if shown and not isinstance(link, SqlmigError):
                    trace = trace.replace(shown, self.foreign(shown))
            print(self.clean(trace), end="", file=self.stderr)
        if isinstance(exc, SqlmigError):
            message = str(exc)
        else:
            message = f"unexpected {type(exc).__name__}: {self.foreign(str(exc))}"
            if not self.verbose:
                message += " (run with -v for the traceback)"
        print(self.clean(f"sqlmig: error: {' '.join(message.split())}"), file=self.stderr)


class _Progress(logging.Handler):
    """Prints the ``sqlmig`` log: warnings, the steps' own records, the rest under ``-v``."""

    def __init__(self, out: Output) -> None:
        super().__init__(logging.DEBUG)
        self.out = out

    def steps(self, running: str, done: str, total: int) -> StepLines:
        """The ``on_step`` callback printing the step lines, with a counter above a few steps."""
        shown = total if total > PROGRESS_ABOVE and self.out.console.terminal else 0
        return StepLines(self.out.console, running, done, shown)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not stop a migration
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self.out.console.end_open_line()
            print(self.out.clean(f"warning: {message}"), file=self.out.stderr, flush=True)
        elif record.name != log.name and record.levelno >= logging.INFO:
            self.out.line(message)  # a step's own progress (logger sqlmig.migrations, ...)
        elif self.out.verbose and not hasattr(record, "migration"):
            self.out.line(message)  # not a step's record: the step lines (on_step) show those


@contextmanager
def _logging(out: Output) -> Iterator[_Progress]:
    handler = _Progress(out)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if out.verbose else logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


# -- commands --------------------------------------------------------------


def _runner(args: argparse.Namespace, out: Output) -> MigrationRunner:
    out.hide(args.url)
    out.hide(os.environ.get(URL_VAR))
    if args.url is not None and "://" not in args.url:
        shown = "the value given" if "@" in args.url else repr(args.url)
        raise ConfigError(
            f"--url {shown} is not a database URL: write it as dialect+driver://user:"
            "password@host/database (a SQLite file is sqlite:///path/to/file.db); "
            "to choose an environment of the config file, use --env NAME",
            key="url",
        )
    settings = runner_settings(
        env=args.env,
        path=_config_path(args),
        url=args.url,
        migrations=args.dir,
        lock_timeout=args.lock_timeout,
    )
    out.hide(settings["db"])  # the configured URL, ${VAR} filled in
    return MigrationRunner(**settings)


def _config_path(args: argparse.Namespace) -> str | None:
    if args.config is None:
        return None
    if not Path(args.config).is_file():
        raise ConfigError(
            f"config file {args.config} does not exist: fix --config", path=args.config
        )
    return str(args.config)


def _number(target: str | None) -> int | None:
    text = (target or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def cmd_upgrade(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    if args.dry_run:
        _print_plan(out, runner, runner.dry_run(args.target))
        return 0
    total = 0
    if out.console.terminal:
        limit = _number(args.target)
        pending = runner.status().pending
        total = len([m for m in pending if limit is None or m.number <= limit])
    applied = runner.upgrade(args.target, on_step=progress.steps("applying", "applied", total))
    if applied:
        out.line(f"Applied {len(applied)} migration(s) to {runner.url}")
    else:
        upto = f" up to {args.target}" if args.target else ""
        out.line(f"Nothing to upgrade{upto}: {runner.url} is up to date")
    return 0


def _print_plan(out: Output, runner: MigrationRunner, plan: list[PlannedStep]) -> None:
    if not plan:
        out.line(f"Dry run: nothing to upgrade, {runner.url} is up to date")
        return
    out.line(
        f"Dry run on {runner.url}: {len(plan)} migration(s) would be applied; nothing was changed"
    )
    untried = [s for s in plan if not s.tried]
    plan_only = bool(untried) and untried[0].migration.transactional  # the backend cannot
    if plan_only:
        backend = make_url(runner.url).get_backend_name()
        out.line(
            f"Plan only: {backend} commits DDL as it runs, so DDL there cannot be tried "
            "in a rolled-back transaction; the steps' SQL is not shown"
        )
    after_untried = False
    for step in plan:
        description = step.migration.description
        out.line(f"{step.migration.label}" + (f": {description}" if description else ""))
        if not step.migration.transactional:
            out.line("    -- transactional = False: planned only, not tried")
        elif not step.tried and after_untried and not plan_only:
            out.line("    -- planned only: it comes after a step that was not tried")
        elif step.tried and not step.statements:
            out.line("    -- sends no SQL")
        _print_statements(out, step.statements)
        after_untried = after_untried or not step.tried


def _print_statements(out: Output, statements: list[str]) -> None:
    """A step's statements; those that only read (reflection, queries) under ``-v`` only."""
    shown = statements if out.verbose else [s for s in statements if changes_something(s)]
    for statement in shown:
        lines = statement.strip().expandtabs(4).splitlines()
        out.line("\n".join(f"    {line.rstrip()}" for line in lines) + ";")
    hidden = len(statements) - len(shown)
    if hidden:
        out.line(
            f"    -- and {hidden} statement(s) that only read (queries, reflection): -v shows them"
        )


def cmd_downgrade(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    total = 0
    if out.console.terminal:
        limit = -1 if args.target.strip().lower() == "base" else _number(args.target)
        applied = runner.status().applied
        total = len([r for r in applied if limit is not None and r.number > limit])
    undone = runner.downgrade(args.target, on_step=progress.steps("undoing", "undid", total))
    if undone:
        out.line(f"Undid {len(undone)} migration(s) above {args.target} on {runner.url}")
    else:
        out.line(f"Nothing to undo above {args.target} on {runner.url}")
    return 0


def cmd_rollback(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    undone = runner.rollback_last(on_step=progress.steps("undoing", "undid", 0))
    if undone is None:
        out.line(f"Nothing to roll back: no migration is applied on {runner.url}")
    else:
        out.line(f"Rolled back {undone.label} on {runner.url}")
    return 0


def status_rows(status: Status) -> list[dict[str, Any]]:
    """One entry per version, lowest first, as ``status --json`` prints them."""
    states = {r.number: "applied" for r in status.applied}
    states.update({r.number: "changed" for r in status.changed})
    states.update({r.number: "missing" for r in status.missing})
    rows: list[tuple[int, dict[str, Any]]] = []
    for row in [*status.applied, *status.failed]:
        state = states[row.number] if row.success else "failed"
        rows.append(
            (
                row.number,
                {
                    "version": row.version,
                    "name": row.name,
                    "state": state,
                    "applied_at": row.applied_at.isoformat(),
                    "execution_ms": row.execution_ms,
                },
            )
        )
    for migration in status.pending:
        rows.append(
            (
                migration.number,
                {
                    "version": migration.version,
                    "name": migration.name,
                    "state": "pending",
                    "applied_at": None,
                    "execution_ms": None,
                },
            )
        )
    return [entry for _, entry in sorted(rows, key=lambda item: item[0])]


def status_json(status: Status) -> str:
    """``{"current": ..., "migrations": [...]}``: what ``status --json`` prints."""
    return json.dumps({"current": status.current, "migrations": status_rows(status)}, indent=2)


def cmd_status(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    status = runner.status()
    if args.json:
        out.line(status_json(status))
        return 0
    out.line(f"Database:   {runner.url}")
    out.line(f"Current:    {status.current or '(none)'}")
    rows = [("version", "name", "applied at (UTC)", "state")]
    for entry in status_rows(status):
        when = entry["applied_at"][:19].replace("T", " ") if entry["applied_at"] else "-"
        rows.append((entry["version"], entry["name"], when, entry["state"]))
    if len(rows) == 1:
        out.line("No migrations found")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out.line()
    for i, row in enumerate(rows):
        out.line("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            out.line("  ".join("-" * w for w in widths))
    counts = [
        (status.total_applied, "applied"),
        (status.total_pending, "pending"),
        (len(status.changed), "changed"),
        (len(status.missing), "missing"),
        (len(status.failed), "failed"),
    ]
    out.line()
    out.line(", ".join(f"{n} {word}" for n, word in counts if n or word in ("applied", "pending")))
    return 0


def cmd_verify(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    runner.verify()
    status = runner.status()
    out.line(
        f"OK: history and files agree ({status.total_applied} applied, "
        f"{status.total_pending} pending)"
    )
    return 0


def cmd_repair(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    changes = runner.repair()
    for change in changes:
        out.line(f"Repaired: {change}")
    if not changes:
        out.line("Nothing to repair: history and files agree")
    return 0


def cmd_baseline(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    marked = runner.baseline(args.version)
    out.line(
        f"Baselined {runner.url} at {args.version}: {len(marked)} migration(s) marked "
        "applied without running them"
    )
    return 0


def cmd_stamp(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    out.line(f"Stamped {runner.url}: {runner.stamp(args.version)}")
    return 0


def cmd_unstamp(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    runner = _runner(args, out)
    out.line(f"Unstamped {runner.url}: {runner.unstamp(args.version)}")
    return 0


def cmd_new(args: argparse.Namespace, out: Output, progress: _Progress) -> int:
    folder = migrations_setting(env=args.env, path=_config_path(args), migrations=args.dir)
    path = new_migration(folder, args.name)
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    out.line(f"Created {shown}")
    return 0


Command = Callable[[argparse.Namespace, Output, _Progress], int]
COMMANDS: dict[str, Command] = {
    "upgrade": cmd_upgrade,
    "downgrade": cmd_downgrade,
    "rollback": cmd_rollback,
    "status": cmd_status,
    "verify": cmd_verify,
    "repair": cmd_repair,
    "baseline": cmd_baseline,
    "stamp": cmd_stamp,
    "unstamp": cmd_unstamp,
    "new": cmd_new,
}


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sqlmig`` with ``argv`` (default: the process arguments); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    out = Output(bool(args.verbose), sys.stdout, sys.stderr)
    with _logging(out) as progress, _packages_from_here():
        try:
            return COMMANDS[args.command](args, out, progress)
        except SqlmigError as exc:
            out.error(exc)
            return exit_code(exc)
        except KeyboardInterrupt:
            out.console.end_open_line()
            print(
                "sqlmig: interrupted: run 'sqlmig status' to see what was applied", file=out.stderr
            )
            return 130
        except Exception as exc:  # anything else: still one line, exit 1
            out.error(exc)
            return 1
