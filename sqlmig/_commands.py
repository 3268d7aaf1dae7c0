"""The commands of ``sqlmig``: each calls the runner method of its name and prints the result.

``new`` calls :func:`sqlmig._scaffold.new_migration`. Each command takes the
parsed arguments, the :class:`~sqlmig._console.Output` and the log handler
(whose ``steps()`` is the ``on_step`` callback of the call), and returns the
exit code. ``--sql`` (the script of ``upgrade`` or ``downgrade``) asks the
runner, or, with no URL configured, writes for ``--dialect``. The module is
long because it holds every command; each is short.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from ._console import Output, Progress
from ._discovery import discover
from ._dryrun import changes_something
from ._errors import ConfigError, SchemaDrift, UsageError
from ._fleet_commands import run_all, wants_all
from ._migration import PlannedStep, Status
from ._runner import MigrationRunner
from ._scaffold import new_migration
from ._sql_script import DIALECTS, dialect_choice, render_script
from ._urls import URL_HINT
from .config import URL_VAR, migrations_setting, runner_settings

__all__ = ["COMMANDS", "Command", "status_json", "status_rows"]


def _runner(args: argparse.Namespace, out: Output) -> MigrationRunner:
    out.hide(args.url)
    out.hide(os.environ.get(URL_VAR))
    if args.url is not None and "://" not in args.url:
        shown = "the value given" if "@" in args.url else repr(args.url)
        raise ConfigError(
            f"--url {shown} is not a database URL: {URL_HINT}; "
            "to choose an environment of the config file, use --env NAME",
            key="url",
        )
    settings = runner_settings(
        env=args.env,
        path=_config_path(args),
        url=args.url,
        migrations=args.dir,
        lock_timeout=args.lock_timeout,
        metadata=args.metadata,
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


def _script(args: argparse.Namespace, out: Output, *, downgrade: bool) -> int:
    """``--sql``: the script alone on stdout; what the steps log goes to stderr meanwhile."""
    console = out.console
    out.console = out.errors
    try:
        script = _written_script(args, out, downgrade=downgrade)
    finally:
        out.console = console
    encoding = getattr(console.stream, "encoding", None)
    if encoding:
        try:
            script.encode(encoding)
        except UnicodeEncodeError as exc:  # the console would drop it, and say nothing
            raise UsageError(
                f"cannot print the script: standard output's encoding ({encoding}) has no "
                f"{exc.object[exc.start : exc.end]!r}, which the script holds; set "
                "PYTHONIOENCODING=utf-8 (or a UTF-8 locale) and run it again"
            ) from None
    out.line(script.rstrip("\n"))
    return 0


def _written_script(args: argparse.Namespace, out: Output, *, downgrade: bool) -> str:
    """The steps' script, for the runner's URL or, without one, ``--dialect``."""
    if args.dialect is not None:
        dialect_choice(args.dialect)
    try:
        runner = _runner(args, out)
    except ConfigError as exc:
        if exc.key not in ("url", "tool.sqlmig.url"):
            raise
        if args.dialect is None:
            raise ConfigError(
                f"{exc.message}; or, to write the script without a URL, give --dialect NAME "
                f"({', '.join(DIALECTS)})",
                key=exc.key,
            ) from None
        # no URL: the other settings (migrations, table, schema) still count
        settings = runner_settings(
            env=args.env,
            path=_config_path(args),
            url=f"{args.dialect}://",
            migrations=args.dir,
        )
        script = render_script(
            discover(settings["migrations"]),
            args.dialect,
            args.target,
            downgrade=downgrade,
            from_version=args.from_version,
            table=settings.get("table", "migrations"),
            schema=settings.get("schema"),
        )
    else:
        backend = make_url(runner.url).get_backend_name()
        family = {backend, args.dialect} <= {"mysql", "mariadb"}
        if args.dialect not in (None, backend) and not family:
            raise UsageError(
                f"--dialect {args.dialect} disagrees with the database URL ({backend}): "
                "leave out --dialect, or --url"
            ) from None
        script = runner.sql_script(
            args.target,
            downgrade=downgrade,
            from_version=args.from_version,
            dialect=args.dialect,
        )
    return script


def _no_script_options(args: argparse.Namespace) -> None:
    given = [o for o, v in (("--from", args.from_version), ("--dialect", args.dialect)) if v]
    if given:
        verb = "go" if len(given) > 1 else "goes"
        raise UsageError(f"{' and '.join(given)} {verb} with --sql: add --sql, or leave it out")


def cmd_upgrade(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    if wants_all(args):
        return run_all("upgrade", args, out, progress)
    if args.sql:
        if args.dry_run:
            raise UsageError("--sql and --dry-run are two ways to show the SQL: choose one")
        return _script(args, out, downgrade=False)
    _no_script_options(args)
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


def cmd_downgrade(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    if wants_all(args):
        return run_all("downgrade", args, out, progress)
    if args.sql:
        return _script(args, out, downgrade=True)
    _no_script_options(args)
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


def cmd_rollback(args: argparse.Namespace, out: Output, progress: Progress) -> int:
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


def cmd_status(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    if wants_all(args):
        return run_all("status", args, out, progress)
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


def cmd_verify(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    runner = _runner(args, out)
    runner.verify()
    status = runner.status()
    out.line(
        f"OK: history and files agree ({status.total_applied} applied, "
        f"{status.total_pending} pending)"
    )
    return 0


def cmd_repair(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    runner = _runner(args, out)
    changes = runner.repair()
    for change in changes:
        out.line(f"Repaired: {change}")
    if not changes and not runner.history():
        out.line("Nothing to repair: no step is recorded yet")
    elif not changes:
        out.line("Nothing to repair: history and files agree")
    return 0


def cmd_baseline(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    runner = _runner(args, out)
    marked = runner.baseline(args.version)
    out.line(
        f"Baselined {runner.url} at {args.version}: {len(marked)} migration(s) marked "
        "applied without running them"
    )
    return 0


def cmd_stamp(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    runner = _runner(args, out)
    out.line(f"Stamped {runner.url}: {runner.stamp(args.version)}")
    return 0


def cmd_unstamp(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    runner = _runner(args, out)
    out.line(f"Unstamped {runner.url}: {runner.unstamp(args.version)}")
    return 0


def cmd_check(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    runner = _runner(args, out)
    if runner.metadata is None:
        raise ConfigError(
            "check needs the models to compare with: pass --metadata MODULE:ATTR "
            "(e.g. myapp.db:metadata) or set metadata in [tool.sqlmig]",
            key="metadata",
        )
    differences = runner.check()
    if differences:
        raise SchemaDrift(
            f"{runner.url} does not match the models ({len(differences)} difference(s)): "
            "apply pending steps with 'sqlmig upgrade', write a migration for the rest\n"
            + "\n".join(f"  {line}" for line in differences),
            differences=differences,
        )
    out.line(f"OK: {runner.url} has nothing pending and matches the models")
    return 0


def cmd_new(args: argparse.Namespace, out: Output, progress: Progress) -> int:
    if args.autogenerate:
        return _autogenerate(args, out)
    folder = migrations_setting(env=args.env, path=_config_path(args), migrations=args.dir)
    path = new_migration(folder, args.name, sql=args.sql)
    out.line(f"Created {_shown(path)}")
    return 0


def _autogenerate(args: argparse.Namespace, out: Output) -> int:
    runner = _runner(args, out)
    if runner.metadata is None:
        raise ConfigError(
            "new --autogenerate needs the models to compare with: pass --metadata MODULE:ATTR "
            "(e.g. myapp.db:metadata) or set metadata in [tool.sqlmig]",
            key="metadata",
        )
    path = runner.autogenerate(args.name)
    if path is None:
        out.line(f"No changes: {runner.url} matches the models; nothing written")
        return 0
    out.line(f"Created {_shown(path)}: review it, then run sqlmig upgrade")
    return 0


def _shown(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


Command = Callable[[argparse.Namespace, Output, Progress], int]
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
    "check": cmd_check,
    "new": cmd_new,
}
