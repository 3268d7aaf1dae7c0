"""What the ``sqlmig`` command shows while it works: step lines, durations, log
records, errors, every URL masked, a reader gone.

Only the command line uses this module; the library itself never prints.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from ._errors import SchemaDrift, SqlmigError
from ._migration import Migration, StepPhase
from ._urls import URL_TEMPLATE, holds_secret, mask, mask_in, scrub

__all__ = ["Console", "Output", "Progress", "StepLines", "human_duration", "logging_to"]

log = logging.getLogger("sqlmig")

URL_TEXT = re.compile(r"[A-Za-z][\w+.-]*://\S+")
#: Punctuation that ends a sentence after a URL, not the URL itself.
TRAILING = ":;,.)]}'\""
PROGRESS_ABOVE = 3  # show "[n/total]" on a terminal when more steps than this are pending


def human_duration(seconds: float) -> str:
    """A step's time as a person reads it.

    >>> [human_duration(s) for s in (0.012, 4.04, 125, 7380)]
    ['12 ms', '4.0 s', '2 min 5 s', '2 h 3 min']
    """
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms} ms"
    tenths = round(seconds * 10)
    if tenths < 600:
        return f"{tenths / 10:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


class Console:
    """The command's standard output.

    Whole lines; on a terminal, one line may be left open (a running step) and
    later completed in place. When the reader goes away (``sqlmig status |
    head``, a terminal hung up), the rest of the output is dropped quietly and
    the command goes on to its end: a migration is never cut short because
    nobody reads its progress, and the exit code still tells how it went.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.terminal = stream is not None and _is_terminal(stream)
        #: the reader closed the pipe; nothing more is written
        self.closed = False
        self._open = ""

    def line(self, text: str = "") -> None:
        """Write ``text`` as a line of its own (ending a line left open first)."""
        self.end_open_line()
        self._write(text + "\n")

    def open_line(self, text: str) -> None:
        """On a terminal, show ``text`` until :meth:`complete` replaces it."""
        self.end_open_line()
        if self.terminal and self._write(text):
            self._open = text

    def complete(self, text: str) -> None:
        """Replace the open line with ``text`` (or write it as a new line), ending it."""
        if not self._open:
            self.line(text)
            return
        width, self._open = len(self._open), ""
        self._write("\r" + text.ljust(width) + "\n")

    def end_open_line(self) -> None:
        """End the open line, so that what follows (a log line, an error) starts afresh."""
        if self._open:
            self._open = ""
            self._write("\n")

    def write(self, text: str) -> None:
        """Write ``text`` as it is (an error's lines), ending a line left open first."""
        self.end_open_line()
        self._write(text)

    def _write(self, text: str) -> bool:
        if self.closed:
            return False
        if self.stream is None:  # started with the stream closed (``2>&-``): Python has none
            self.closed = True
            return False
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:  # a pipe closed, a terminal gone (EIO), a full disk: the reader is gone
            self.closed = True
            _to_devnull(self.stream)
            return False
        except UnicodeEncodeError:  # a character the stream's encoding lacks: shown escaped
            encoding = getattr(self.stream, "encoding", None) or "ascii"
            return self._write(text.encode(encoding, "backslashreplace").decode(encoding))
        except ValueError:  # the stream object was closed under the command
            self.closed = True
            return False
        return True


def _to_devnull(stream: TextIO) -> None:
    """Point ``stream``'s file at the null device, so its last flush at exit cannot fail."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file: nothing is flushed at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class StepLines:
    """The runner's ``on_step`` callback of the command: one line per step with its time.

    On a terminal, ``applying 004_x ...`` shows while the step runs and is
    completed in place (``applied 004_x in 4.0 s``), with a ``[n/total]``
    counter when ``total`` is set; elsewhere (a log file, a pipe) one line per
    step when it is done.
    """

    def __init__(self, console: Console, running: str, done: str, total: int = 0) -> None:
        self.console = console
        self.running = running
        self.done = done
        self.total = total
        self._count = 0
        self._counter = ""

    def __call__(self, migration: Migration, phase: StepPhase, seconds: float) -> None:
        label, took = migration.label, human_duration(seconds)
        if phase == "start":
            self._count += 1
            self._counter = f"[{self._count}/{self.total}] " if self.total else ""
            self.console.open_line(f"{self._counter}{self.running} {label} ...")
        elif phase == "done":
            self.console.complete(f"{self._counter}{self.done} {label} in {took}")
        elif self.console.terminal:
            self.console.complete(f"{self._counter}{self.running} {label} ... failed after {took}")


def _masked_urls(text: str) -> str:
    """Every URL-like word of ``text`` that holds a secret, masked on its parsed form."""

    def masked(match: re.Match[str]) -> str:
        url = match[0].rstrip(TRAILING)  # "... to URL: reason": the colon is not the URL's
        if url == URL_TEMPLATE:  # the hint of how a URL is written: no one's password
            return match[0]
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

    def __init__(self, verbose: bool, stdout: TextIO | None, stderr: TextIO | None) -> None:
        self.verbose = verbose
        self.urls: list[str] = []
        self.console = Console(stdout)
        #: standard error, written as the standard output is: a reader gone is no failure
        self.errors = Console(stderr)

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
            trace = self._foreign_parts("".join(traceback.format_exception(exc)), exc)
            self.errors.write(self.clean(trace))
        if isinstance(exc, SqlmigError):
            # its URLs are masked, but it may quote text it did not write (a module's error)
            message = self._foreign_parts(str(exc), exc)
        else:
            message = f"unexpected {type(exc).__name__}: {self.foreign(str(exc))}"
            if not self.verbose:
                message += " (run with -v for the traceback)"
        first, *listed = message.split("\n") if isinstance(exc, SchemaDrift) else [message]
        self.errors.line(self.clean(f"sqlmig: error: {' '.join(first.split())}"))
        for line in listed:  # one line per difference
            self.errors.line(self.clean(line.rstrip()))

    def _foreign_parts(self, text: str, exc: BaseException) -> str:
        """``text`` with each message of ``exc``'s chain that sqlmig did not write made safe,
        whole or by its first line (as a step's failure quotes it), wherever it appears."""
        for link in _chain(exc):
            shown = str(link).strip()
            if not shown or isinstance(link, SqlmigError):
                continue
            for part in dict.fromkeys((shown, shown.splitlines()[0])):
                if part in text:
                    text = text.replace(part, self.foreign(part))
        return text


class Progress(logging.Handler):
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
        if hasattr(record, "target") and not self.out.verbose:
            return  # a target's end under --all: its own line says it
        # a step's own record (logger sqlmig.migrations, ...) is text sqlmig did not write
        own = record.name == log.name
        shown = self.out.clean(message) if own else self.out.foreign(message)
        if record.levelno >= logging.WARNING:
            self.out.console.end_open_line()
            self.out.errors.line(f"warning: {shown}")
        elif not own and record.levelno >= logging.INFO:
            self.out.console.line(shown)  # a step's own progress
        elif self.out.verbose and not hasattr(record, "migration"):
            self.out.console.line(shown)  # not a step's record: the step lines (on_step) show those


@contextmanager
def logging_to(out: Output) -> Iterator[Progress]:
    """The ``sqlmig`` log printed to ``out`` for the block (``-v``: every record)."""
    handler = Progress(out)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if out.verbose else logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
