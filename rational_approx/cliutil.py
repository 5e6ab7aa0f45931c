"""The one command-line convention of ``rational-approx`` and ``rsae`` (``rsae`` imports it from here).

Exit status
    ==== ==========================================================================================================
    0    success
    2    usage or bad input: an argparse error, an invalid option, target, type, domain or device, a missing or
         malformed input file, an output that may not be written (package errors that are ``ValueError``-like)
    1    the work ran but failed (a fit that does not converge, training that diverges, an I/O failure while
         working), or an unexpected internal error
    130  interrupted (Ctrl-C)
    ==== ==========================================================================================================

Every failure is one line ``<prog>: error: <message>`` on stderr (``<prog>`` is the command, e.g.
``rsae train``), never a traceback; ``--traceback`` (an option of every subcommand) re-raises the exception
instead, so Python prints its traceback. Each package maps its exception classes to a status in one table
(:data:`RATIONAL_APPROX_EXIT_STATUS` here, ``rsae.cli.EXIT_STATUS``); :func:`run_guarded` applies it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from rational_approx.errors import ConvergenceError, RationalApproxError

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "RATIONAL_APPROX_EXIT_STATUS",
    "OneLineParser",
    "add_traceback_option",
    "error_line",
    "exit_status",
    "run_guarded",
]

EXIT_OK = 0
"""Success."""
EXIT_FAILED = 1
"""The work ran but failed, or an unexpected internal error."""
EXIT_USAGE = 2
"""Usage or bad input."""
EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl-C): 128 + SIGINT, as shells report it."""

ExitTable = Sequence[tuple[type[BaseException], int]]
"""(exception class, exit status) pairs; the first class the exception is an instance of decides."""

RATIONAL_APPROX_EXIT_STATUS: ExitTable = (
    (ConvergenceError, EXIT_FAILED),  # the fit ran and did not converge
    (RationalApproxError, EXIT_USAGE),  # DomainError, DegreeError, TargetError, an unwritable output path
    (ValueError, EXIT_USAGE),  # the package's plain ValueErrors are bad values (an unknown gate, a bad number)
    (OSError, EXIT_FAILED),  # I/O failed while working
)
"""Exit status of each exception class of :mod:`rational_approx` (the table of ``rational-approx``)."""

T = TypeVar("T")


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line ``<prog>: error: <message>`` on stderr, exit status 2 (argparse's
    own default prints the usage too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_traceback_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--traceback`` to every subcommand of ``parser`` (call it once all subcommands are registered)."""
    for action in parser._actions:  # argparse keeps sub-parsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument("--traceback", action="store_true",
                                 help="on a failure, show the Python traceback instead of one line")


def exit_status(exc: BaseException, table: ExitTable) -> int | None:
    """The status ``table`` gives ``exc`` (its first matching class), or None: an unexpected error."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for cls, status in table:
        if isinstance(exc, cls):
            return status
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_line(prog: str, exc: BaseException, table: ExitTable, own: tuple[type[BaseException], ...]) -> str:
    """The one line reporting ``exc``: its message for errors of the packages' own classes (``own``), prefixed by
    the type for other known classes (``OSError: ...``), and an internal error with the hint for the rest."""
    message = _one_line(str(exc)) or "no message"
    if isinstance(exc, KeyboardInterrupt):
        return f"{prog}: error: interrupted"
    if exit_status(exc, table) is None:
        return (f"{prog}: error: internal error ({type(exc).__name__}: {message}); rerun with --traceback to see "
                "the traceback")
    if isinstance(exc, own):
        return f"{prog}: error: {message}"
    return f"{prog}: error: {type(exc).__name__}: {message}"


def run_guarded(prog: str, work: Callable[[], T], table: ExitTable, *, own: tuple[type[BaseException], ...] = (),
                traceback: bool = False) -> tuple[int, T | None]:
    """``(0, work())``, or ``(status, None)`` after printing the one error line of the exception ``work`` raised.

    Parameters
    ----------
    prog : str
        The command named in the message, e.g. ``"rational-approx fit"``.
    work : callable
        The command's work, without arguments.
    table : sequence of (exception class, status)
        The package's exit-status table; an exception in no row is an internal error (status 1).
    own : tuple of exception classes
        The packages' own error classes, whose messages are printed without their type.
    traceback : bool
        Re-raise every exception but ``KeyboardInterrupt`` (``--traceback``).
    """
    try:
        return EXIT_OK, work()
    except KeyboardInterrupt as exc:
        sys.stderr.write(error_line(prog, exc, table, own) + "\n")
        return EXIT_INTERRUPTED, None
    except Exception as exc:
        if traceback:
            raise
        sys.stderr.write(error_line(prog, exc, table, own) + "\n")
        status = exit_status(exc, table)
        return (EXIT_FAILED if status is None else status), None

