"""What the ``sqlmig`` command shows while it works: step lines, durations, a reader gone.

Only the command line uses this module; the library itself never prints.
"""

from __future__ import annotations

import os
from typing import TextIO

from ._migration import Migration, StepPhase

__all__ = ["Console", "StepLines", "human_duration"]


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
    head``), the rest of the output is dropped quietly and the command goes on
    to its end: a migration is never cut short because nobody reads its
    progress, and the exit code still tells how it went.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.terminal = _is_terminal(stream)
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

    def _write(self, text: str) -> bool:
        if self.closed:
            return False
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            _to_devnull(self.stream)
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
