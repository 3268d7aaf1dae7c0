"""``processes=True`` under attack: what the parent and the workers must survive.

Each test runs the caller in a child process of its own (signals, hangs) and
bounds it. The pipe between parent and worker does not depend on the
database, so these run on SQLite files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUND = 30.0


def run_code(code: str, timeout: float = BOUND) -> tuple[int | None, str, str]:
    """The code run by a fresh interpreter: its exit code (None: it hung) and output."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,  # its workers too are ended if it hangs
    )
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        return None, out, err
    return child.returncode, out, err


def write_steps(folder: Path, steps: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in steps.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_ctrl_c_while_a_big_log_record_is_read_interrupts_cleanly(tmp_path: Path) -> None:
    """A Ctrl-C that lands while the parent reads a large record half way: the rest of the
    record is not taken for a message of its own (a hang), every target is interrupted."""
    folder = write_steps(
        tmp_path / "m",
        {
            "001_big.py": """\
                import logging

                def up(conn):
                    for i in range(60):
                        logging.getLogger("app").warning("x" * 2_000_000)
                """,
            "002_next.py": "def up(conn):\n    pass\n",
        },
    )
    code = f"""\
        import logging, os, signal, threading
        from sqlmig import TargetsInterrupted, upgrade_all

        seen = []

        class CtrlC(logging.Handler):  # Ctrl-C soon after the 3rd record: amid the next ones
            def emit(self, record):
                seen.append(record)
                if len(seen) == 3:
                    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()

        logging.getLogger("app").addHandler(CtrlC())
        for round in range(2):
            seen.clear()
            urls = [f"sqlite:///{tmp_path}/{{round}}-{{i}}.db" for i in range(2)]
            try:
                results = upgrade_all(urls, {str(folder)!r}, jobs=2, processes=True)
                print("not interrupted", [(r.state, str(r.error)[:300]) for r in results])
            except TargetsInterrupted as exc:
                print([r.state for r in exc.results])
        """
    code_, out, err = run_code(code, 40)
    assert code_ == 0, err[-2000:]
    assert out.split("\n")[:2] == ["['interrupted', 'interrupted']"] * 2, err[-2000:]


def test_a_thread_a_step_leaves_logging_is_heard_and_does_not_hold_the_run(
    tmp_path: Path,
) -> None:
    """A step starts a thread that logs on after the step (and its target) ended: every
    record reaches the caller, and the worker is not left blocked on its full pipe."""
    folder = write_steps(
        tmp_path / "m",
        {
            "001_thread.py": """\
                import logging, threading

                def up(conn):
                    def chatter():
                        for i in range(3000):
                            logging.getLogger("app").warning("late %d %s", i, "y" * 100)
                    threading.Thread(target=chatter).start()
                """,
        },
    )
    code = f"""\
        import logging, time
        from sqlmig import upgrade_all

        heard = []

        class Count(logging.Handler):
            def emit(self, record):
                if record.getMessage().startswith("late"):
                    heard.append(record)

        logging.getLogger().addHandler(Count())
        urls = [f"sqlite:///{tmp_path}/{{i}}.db" for i in range(2)]
        started = time.monotonic()
        results = upgrade_all(urls, {str(folder)!r}, jobs=2, processes=True)
        print([r.state for r in results], len(heard), time.monotonic() - started < 4)
        """
    code_, out, err = run_code(code)
    assert code_ == 0, err[-2000:]
    assert out.strip() == "['upgraded', 'upgraded'] 6000 True", err[-2000:]


def test_a_worker_forked_while_the_caller_held_sqlite_s_lock_is_replaced(tmp_path: Path) -> None:
    """A thread of the caller inside SQLite's library (its global mutex held) when a worker
    is forked: that worker would wait on the mutex forever; it is killed before it takes a
    target and another worker, forked later, runs the target."""
    folder = write_steps(tmp_path / "m", {"001_t.py": "def up(conn):\n    pass\n"})
    code = f"""\
        import ctypes, sqlite3, threading, time
        from sqlmig import upgrade_all

        lib = ctypes.CDLL("libsqlite3.so.0")
        lib.sqlite3_mutex_alloc.restype = ctypes.c_void_p
        lib.sqlite3_mutex_enter.argtypes = lib.sqlite3_mutex_leave.argtypes = [ctypes.c_void_p]
        main = lib.sqlite3_mutex_alloc(2)  # SQLITE_MUTEX_STATIC_MAIN
        held = threading.Event()

        def hold():
            lib.sqlite3_mutex_enter(main)
            held.set()
            time.sleep(2)
            lib.sqlite3_mutex_leave(main)

        threading.Thread(target=hold).start()
        held.wait()
        results = upgrade_all(["sqlite:///{tmp_path}/t.db"], {str(folder)!r}, processes=True)
        print([r.state for r in results])
        """
    code_, out, err = run_code(code, 20)
    assert code_ == 0, err[-2000:]
    assert out.strip() == "['upgraded']", err[-2000:]


def test_a_record_logged_while_the_worker_sends_one_does_not_hang_it(tmp_path: Path) -> None:
    """Logging while the worker is sending a record (a value whose pickling logs, as a
    ``__del__`` run by the garbage collector may): the worker goes on, both records arrive."""
    folder = write_steps(
        tmp_path / "m",
        {
            "001_loud.py": """\
                import logging

                class Loud:
                    def __reduce__(self):
                        logging.getLogger("app").warning("pickled")
                        return (str, ("loud",))

                def up(conn):
                    logging.getLogger("app").warning("carrying", extra={"loud": Loud()})
                """,
        },
    )
    code = f"""\
        import logging
        from sqlmig import upgrade_all

        heard = []

        class Keep(logging.Handler):
            def emit(self, record):
                heard.append(record.getMessage())

        logging.getLogger("app").addHandler(Keep())
        results = upgrade_all(["sqlite:///{tmp_path}/t.db"], {str(folder)!r}, processes=True)
        print([r.state for r in results], "carrying" in heard, "pickled" in heard)
        """
    code_, out, err = run_code(code, 15)
    assert code_ == 0, err[-2000:]
    assert out.strip() == "['upgraded'] True True", err[-2000:]


def test_a_step_s_warnings_reach_the_caller_as_on_threads(tmp_path: Path) -> None:
    """A warning a step gives in a worker is the caller's, as on threads: its
    ``catch_warnings`` records it (with the step's file and line)."""
    import warnings

    from sqlmig import upgrade_all

    folder = write_steps(
        tmp_path / "m",
        {
            "001_warn.py": """\
                import warnings

                def up(conn):
                    warnings.warn("mind the gap", DeprecationWarning)
                """,
        },
    )
    urls = [f"sqlite:///{tmp_path}/t{i}.db" for i in range(2)]
    for processes in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = upgrade_all(urls, folder, jobs=2, processes=processes)
        assert [r.state for r in results] == ["upgraded"] * 2
        mine = [w for w in caught if str(w.message) == "mind the gap"]
        assert [(w.category, Path(w.filename).name, w.lineno) for w in mine] == [
            (DeprecationWarning, "001_warn.py", 4)
        ] * 2, processes
        for url in urls:
            Path(url.removeprefix("sqlite:///")).unlink()


def test_a_process_a_step_forks_does_not_mix_its_records_into_the_worker_s(
    tmp_path: Path,
) -> None:
    """A step forks, and both processes log large records at once on the pipe they share:
    only the worker writes to it (the fork's records are dropped), so none is garbled."""
    folder = write_steps(
        tmp_path / "m",
        {
            "001_fork.py": """\
                import logging, os

                def up(conn):
                    pid = os.fork()
                    for i in range(20):
                        logging.getLogger("app").warning("z" * 1_000_000)
                    if pid == 0:
                        os._exit(0)
                    os.waitpid(pid, 0)
                """,
        },
    )
    code = f"""\
        import logging, os
        from sqlmig import upgrade_all

        logging.basicConfig(stream=open(os.devnull, "w"), level=logging.WARNING)
        results = upgrade_all(["sqlite:///{tmp_path}/t.db"], {str(folder)!r}, processes=True)
        print([r.state for r in results])
        """
    code_, out, err = run_code(code, 15)
    assert code_ == 0, err[-2000:]
    assert out.strip() == "['upgraded']", err[-2000:]
