"""The one error path of every command (`run-study`, `mixer-train`, `mixer-bench`, `mixer-summary`, `study-report`).

    0    all went well
    1    a run, a cell, the report or the cluster failed: the cause in a line, and where its log is
    2    a user mistake (config, argument, path, environment): one or two lines naming the file and the key path or
         argument, what was found and what would be valid; nothing was written
    130  interrupted (Ctrl-C, SIGTERM): what was under way is resumable

No traceback is printed unless `--debug` is on the command line or `TOKENMIX_DEBUG=1` is set. Torch-free.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .schema import ConfigError

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class RunFailed(Exception):
    """A run or a cluster that failed (not the user's input): exit 1, with the cause and the log path."""


def debugging(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("TOKENMIX_DEBUG", "") not in ("", "0")


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """`--debug` in a command's help; `run_main` reads it from the raw arguments, before parsing can fail."""
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error (also "
                                                             "TOKENMIX_DEBUG=1)")


def _user_mistake(e: BaseException) -> bool:
    """A mistake in what the user gave: a bad config or dataset, a missing or unreadable file, a folder for a file."""
    from .datasets import DatasetError  # torch-free, as is this module
    if isinstance(e, (ConfigError, DatasetError, UnicodeDecodeError)):
        return True
    return isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError)) and bool(e.filename)


def run_main(prog: str, main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None,
             user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's `main(argv)` and map what escapes it to one message and an exit code (see above).
    `user_errors`: further exception types that are user mistakes (exit 2), for packages that define their own."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(args) or 0
    except SystemExit:
        raise  # argparse: usage line and message, exit 2
    except KeyboardInterrupt:
        if debugging(args):
            raise
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if debugging(args):
            raise
        if isinstance(e, user_errors) or _user_mistake(e):
            print(f"{prog}: {describe(e)}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(e, (RunFailed, OSError)):
            print(f"{prog}: {describe(e)}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{prog}: internal error, {type(e).__name__}: {e}\n{prog}: this is a bug; run again with --debug for "
              f"the traceback", file=sys.stderr)
        return EXIT_FAILED


def describe(e: BaseException) -> str:
    """An exception as one line for the user: OS errors name their file."""
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
    return str(e)


def check_output_folder(path: Path, what: str) -> None:
    """Before anything is written: `path` must be a folder, or creatable as one, and writable; else a ConfigError
    naming `what` (the argument or key that gave it)."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise ConfigError(f"{what}: {path} is not a folder{where}; give a folder path")
    try:  # a probe, not os.access: root passes access() on read-only mounts and pseudo file systems
        os.rmdir(tempfile.mkdtemp(prefix=".tokenmix-probe-", dir=existing))
    except OSError as e:
        raise ConfigError(f"{what}: cannot write in {existing} ({e.strerror}); give a writable folder") from None
