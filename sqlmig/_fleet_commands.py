"""``upgrade --all``, ``status --all`` and ``downgrade --all``: every target, one line each.

The targets are ``--targets FILE`` (``-``: standard input; one ``URL`` or
``URL#schema`` per line), else ``[tool.sqlmig] targets``; the other settings
(migrations, table, lock timeout) are the config file's, as for one database.
One line per target as it finishes (a ``[done/total]`` counter below them on
a terminal), then a summary (``98 upgraded, 1 up to date, 1 failed``) and
each failure with its one-line error. Exit 1 when any target failed, 130 on
Ctrl-C (after saying which targets were done, stopped or not started).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL

from ._console import Output, Progress, human_duration
from ._errors import UsageError
from ._urls import scrub

if TYPE_CHECKING:  # the run itself is imported by --all alone: other commands start faster
    from ._fleet import Kind, TargetResult
    from ._targets import Target

__all__ = ["add_all_options", "run_all", "wants_all"]

#: The order states are counted in the summary line.
STATES = (
    "upgraded",
    "downgraded",
    "pending",
    "needs repair",
    "up to date",
    "nothing to undo",
    "failed",
    "interrupted",
    "not started",
)


def add_all_options(parser: argparse.ArgumentParser) -> None:
    """``--all`` and the options that go with it, on ``upgrade``, ``status``, ``downgrade``."""
    parser.add_argument(
        "--all",
        action="store_true",
        help="run on every target: [tool.sqlmig] targets, or --targets FILE",
    )
    parser.add_argument(
        "--targets",
        metavar="FILE",
        help="with --all: the targets, one URL or URL#schema per line ('-': standard input)",
    )
    parser.add_argument(
        "--jobs",
        type=_jobs,
        metavar="N",
        help="with --all: how many targets run at once (default 4; each holds a connection)",
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="with --all: run the targets on --jobs worker processes, not threads (fork only)",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="with --all: start no new target after one fails",
    )


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def wants_all(args: argparse.Namespace) -> bool:
    """Whether the command runs over many targets (``--all``).

    Raises:
        UsageError: ``--targets``, ``--jobs``, ``--processes`` or ``--fail-fast`` without
            ``--all``.
    """
    if args.all:
        return True
    given = [
        option
        for option, value in (
            ("--targets", args.targets),
            ("--jobs", args.jobs),
            ("--processes", args.processes),
            ("--fail-fast", args.fail_fast),
        )
        if value
    ]
    if given:
        raise UsageError(f"{given[0]} goes with --all: add --all, or leave {given[0]} out")
    return False


def run_all(kind: Kind, args: argparse.Namespace, out: Output, progress: Progress) -> int:
    """Run ``kind`` over every target and print as the module says; the exit code.

    What a step logs (shown as for one database) starts with its target's name.
    """
    progress.addFilter(_name_the_target)
    try:
        return _run_all(kind, args, out)
    finally:
        progress.removeFilter(_name_the_target)


def _name_the_target(record: logging.LogRecord) -> bool:
    """Start a record logged while a target runs with the target's name."""
    from ._fleet import THREAD_PREFIX

    if record.threadName and record.threadName.startswith(THREAD_PREFIX):
        name = record.threadName[len(THREAD_PREFIX) :]
        if not getattr(record, "target", None) and not str(record.msg).startswith(name):
            record.msg = f"{name}: {record.msg}"
    return True


def _run_all(kind: Kind, args: argparse.Namespace, out: Output) -> int:
    from ._fleet import TargetsInterrupted, downgrade_all, status_all, upgrade_all
    from ._targets import read_file
    from .config import configured_targets, shared_settings

    _refuse_single_options(args)
    config = None if args.config is None else str(args.config)
    if args.targets is not None:
        stdin = sys.stdin.read() if args.targets == "-" else None
        targets = read_file(args.targets, stdin)
        if not targets:
            raise UsageError(f"--targets {args.targets} names no database: one URL per line")
    else:
        targets = configured_targets(env=args.env, path=config)
    settings = shared_settings(
        env=args.env, path=config, migrations=args.dir, lock_timeout=args.lock_timeout
    )
    report = _Report(kind, out, len(targets), json_output=kind == "status" and args.json)
    migrations = settings.pop("migrations")
    jobs = args.jobs or 4
    try:
        if kind == "upgrade":
            results = upgrade_all(
                targets,
                migrations,
                to=args.target,
                jobs=jobs,
                fail_fast=args.fail_fast,
                processes=args.processes,
                on_result=report.finished,
                **settings,
            )
        elif kind == "downgrade":
            results = downgrade_all(
                targets,
                migrations,
                args.target,
                jobs=jobs,
                fail_fast=args.fail_fast,
                processes=args.processes,
                on_result=report.finished,
                **settings,
            )
        else:
            results = status_all(
                targets,
                migrations,
                jobs=jobs,
                on_result=report.finished,
                processes=args.processes,
                **settings,
            )
    except TargetsInterrupted as stop:
        report.summary(stop.results)
        return 130
    return report.summary(results)


def _refuse_single_options(args: argparse.Namespace) -> None:
    if args.url is not None:
        raise UsageError(
            "--all runs on the configured targets, not --url: leave out --url, or give the "
            "databases with --targets FILE"
        )
    for option in ("sql", "dry_run"):
        if getattr(args, option, False):
            name = "--" + option.replace("_", "-")
            raise UsageError(f"{name} works on one database: leave out --all, or {name}")


class _Report:
    """What ``--all`` prints: a line per finished target, a counter, the summary."""

    def __init__(self, kind: Kind, out: Output, total: int, *, json_output: bool) -> None:
        self.kind = kind
        self.out = out
        self.total = total
        self.done = 0
        self.json_output = json_output

    def finished(self, result: TargetResult) -> None:
        self.done += 1
        if self.json_output:
            self.out.console.open_line(f"[{self.done}/{self.total}]")
            return
        self.out.line(f"{result.name}: {self._describe(result)}")
        if self.done < self.total:
            self.out.console.open_line(f"[{self.done}/{self.total}]")

    def _describe(self, result: TargetResult) -> str:
        took = human_duration(result.seconds)
        if result.error is not None:
            return f"failed after {took} (see below)"
        if result.status is not None:
            status = result.status
            current = status.current or "(none)"
            if result.state == "needs repair":
                counts = [
                    (len(status.failed), "failed"),
                    (len(status.changed), "changed"),
                    (len(status.missing), "missing"),
                    (status.total_pending, "pending"),
                ]
                listed = ", ".join(f"{n} {word}" for n, word in counts if n)
                return f"needs repair: {listed}, current {current}"
            if result.state == "pending":
                return f"{status.total_pending} pending, current {current}"
            return f"up to date at {current}"
        count = len(result.applied)
        if result.state in ("upgraded", "downgraded"):
            verb = "applied" if result.state == "upgraded" else "undone"
            return f"{result.state}: {count} migration(s) {verb} in {took}"
        return f"{result.state} ({took})"

    def summary(self, results: list[TargetResult]) -> int:
        out = self.out
        out.console.end_open_line()
        if self.json_output:
            out.line(json.dumps([_status_object(r, out) for r in results], indent=2))
        counts = Counter(r.state for r in results)
        line = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
        if self.json_output:  # stdout is the JSON alone
            out.errors.line(line)
        else:
            out.line(line)
        failed = [r for r in results if r.error is not None]
        stopped = [r for r in results if r.state in ("interrupted", "not started")]
        for result in failed:
            out.errors.line(f"failed: {result.name}: {_error_line(result, out)}")
        if stopped:
            out.errors.line(
                "sqlmig: interrupted: "
                + ", ".join(f"{r.name} ({r.state})" for r in stopped[:20])
                + (f" and {len(stopped) - 20} more" if len(stopped) > 20 else "")
            )
            return 130
        return 1 if failed else 0


def _error_line(result: TargetResult, out: Output) -> str:
    """The target's error as one line, its URL's secrets hidden."""
    text = " ".join(str(result.error).split())
    url = result.target.url
    if isinstance(url, (str, URL)):
        text = scrub(text, url)
    return out.clean(text)


def _status_object(result: TargetResult, out: Output) -> dict[str, Any]:
    """One target of ``status --all --json``: its name, URL, schema, status or error."""
    from ._commands import status_rows

    target: Target = result.target
    entry: dict[str, Any] = {
        "target": result.name,
        "url": target.display_url,
        "schema": target.schema,
        "current": None,
        "migrations": [],
        "error": None,
    }
    if result.status is not None:
        entry["current"] = result.status.current
        entry["migrations"] = status_rows(result.status)
    if result.error is not None:
        entry["error"] = _error_line(result, out)
    return entry
