"""What every front end shares: usage errors, checked options and output paths, Ctrl-C.

A bad input (option, adapter spec, library, output path) is one line on stderr and exit
status 2, before any work starts; an interrupted run exits with 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

USAGE = 2
INTERRUPTED = 130


class UsageError(Exception):
    """A bad input: reported as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, minimum: float, inclusive: bool, what: str):  # noqa: ANN202
    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum or (not inclusive and value == minimum) or value != value:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    convert.__name__ = what         # argparse names the type in its messages
    return convert


#: argparse types: whole numbers >= 1, whole numbers >= 0, seconds > 0.
positive_int = _number(int, 1, True, "a whole number >= 1")
nonnegative_int = _number(int, 0, True, "a whole number >= 0")
positive_float = _number(float, 0, False, "a number > 0")


def check_output_path(path: str | None, option: str) -> None:
    """Fail now, not after the run, when a report cannot be written to ``path``."""
    if path is None:
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory, give a file name")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{option} {path}: the file is not writable")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot write in the folder {parent}")


def replay_command(plan: Any, target: Any, *, seed: bool = True) -> str:
    """The command line that replays a run of ``plan`` against ``target`` (same
    implementation, options and seed), whichever front end made the run: generated from the
    option table (conformance.frontends.options.replay_command)."""
    from .options import replay_command as from_the_table
    return from_the_table(plan, target, seed=seed)


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def suite_version() -> str:
    try:
        return metadata.version("qsbr-conformance")
    except metadata.PackageNotFoundError:       # running from a source tree
        return "0+unknown"


def version_line() -> str:
    # The distribution's metadata, not ``import hypothesis``: every parser builds this line,
    # and importing Hypothesis would make --help and every usage error pay for it.
    try:
        hypothesis_version = metadata.version("hypothesis")
    except metadata.PackageNotFoundError:
        hypothesis_version = "not installed"
    return (f"qsbr-conformance {suite_version()} (Hypothesis {hypothesis_version}, "
            f"{sys.implementation.name} {sys.version.split()[0]})")


def cache_dir() -> Path:
    from ..sources import cache_dir as the_cache_dir  # one definition (sources.py)
    return the_cache_dir()


def keep_hypothesis_out_of_cwd() -> None:
    """Hypothesis' own storage (constants cache, example database) goes to the cache folder,
    not ``.hypothesis/`` in the current directory, unless the user chose a place."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return
    from hypothesis import configuration
    target = cache_dir() / "hypothesis"
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        return          # read-only home: Hypothesis then works without storage
    configuration.set_hypothesis_home_dir(str(target))
