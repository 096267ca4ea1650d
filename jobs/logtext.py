"""A log as the job page shows it, on the server: rows without escape codes or travis markers, and folds.

It follows static/js/logmodel.js closely enough that row N here is line #LN there, so the build page can
show where a job failed (its failing fold, or its last lines) and link to those very lines."""

import re
from dataclasses import dataclass, field

MARKER = re.compile(r"travis_(fold|time):(start|end):([^\s\r:\x1b]+)(?::([^\r\n\x1b]*))?")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x06\x08\x0b-\x1a\x1c-\x1f\x7f]")
# Travis's own words for a failed command, as in logmodel.js: the fold holding such a line failed.
FAILED_COMMAND = re.compile(r"The command \".*\" (?:exited with (?!0\b)\d+|failed)|Your build exited with (?!0\b)-?\d+")
TAIL_LINES = 20
FOLD_LINES = 40


def visible(text: str) -> str:
    return CONTROL.sub("", ANSI.sub("", text))


def _overwrite(line: str) -> str:
    """What a terminal shows after the line's carriage returns: the last piece with visible text."""
    pieces = line.split("\r")
    for piece in reversed(pieces):
        if visible(piece).strip():
            return piece
    return pieces[-1]


@dataclass
class Fold:
    name: str
    start: int | None = None
    end: int | None = None
    failed: bool = False


@dataclass
class Rows:
    text: list[str] = field(default_factory=list)  # visible text of each row
    folds: list[Fold] = field(default_factory=list)


def parse(log: str, *, complete: bool = True) -> Rows:
    rows = Rows()
    stack: list[Fold] = []
    waiting: list[Fold] = []
    lines = log.split("\n")
    if not complete or lines[-1] == "":
        lines.pop()
    for raw in lines:
        line = raw[:-1] if raw.endswith("\r") else raw
        markers = list(MARKER.finditer(line)) if "travis_" in line else []
        if markers:
            line = MARKER.sub("", line)
        if "\r" in line:
            line = _overwrite(line)
        text = visible(line)
        if markers and not text.strip():
            for m in markers:
                _marker(rows, stack, waiting, m, None)
            continue
        row = len(rows.text)
        rows.text.append(text)
        for fold in waiting:
            fold.start = row
        waiting.clear()
        for m in markers:
            _marker(rows, stack, waiting, m, row)
        if FAILED_COMMAND.search(text):
            for fold in stack:
                fold.failed = True
    for fold in stack:  # a fold still open at the end of a complete log is where it stopped
        fold.failed = complete
    return rows


def _marker(rows: Rows, stack: list[Fold], waiting: list[Fold], m: re.Match, row: int | None) -> None:
    kind, edge, name = m.group(1), m.group(2), m.group(3)
    if kind != "fold":
        return
    if edge == "start":
        fold = Fold(name)
        rows.folds.append(fold)
        stack.append(fold)
        if row is None:
            waiting.append(fold)
        else:
            fold.start = row
        return
    names = [f.name for f in stack]
    if name not in names:
        return
    at = len(names) - 1 - names[::-1].index(name)
    for fold in stack[at:]:
        fold.end = len(rows.text) - 1 if row is None else row - 1
        if fold in waiting:
            waiting.remove(fold)
    del stack[at:]


@dataclass
class Excerpt:
    first: int  # 1-based line numbers, as in #L12-L20
    last: int
    lines: list[str]
    fold: str = ""  # the failing fold's name, if the excerpt is one


def failure_excerpt(log: str, *, complete: bool = True) -> Excerpt | None:
    """The innermost failing fold (its last FOLD_LINES rows), else the last TAIL_LINES rows."""
    rows = parse(log, complete=complete)
    if not rows.text:
        return None
    failed = [f for f in rows.folds if f.failed and f.start is not None]
    if failed:
        fold = max(failed, key=lambda f: f.start)
        end = fold.end if fold.end is not None else len(rows.text) - 1
        start = max(fold.start, end - FOLD_LINES + 1)
        return Excerpt(start + 1, end + 1, rows.text[start:end + 1], fold.name)
    start = max(0, len(rows.text) - TAIL_LINES)
    return Excerpt(start + 1, len(rows.text), rows.text[start:])
