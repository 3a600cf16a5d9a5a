"""Read a curated JSONL file into per-sample checks: every line ends up accepted or rejected, never skipped.

Lines are read as bytes and decoded one by one (invalid UTF-8 bytes become lone surrogates, which the text
check reports as `invalid_utf8`); a line that is not JSON (`records.parse_json_line`: also over-deep nesting, huge
integers, NaN, duplicate keys) or not a curated record is rejected as `bad_schema` with the parser's message. A line
that is empty or only ASCII whitespace is blank: counted, not a record. A line of other whitespace or control
characters (U+3000, \\x1c) is a record line and fails as `bad_schema`. So for any file,
`lines == accepted + rejected + blank_lines`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalevlm.records import BLANK_BYTES, JSONLineError, Record, RecordError, parse_json_line, write_jsonl
from scalevlm.validation.checks import (
    BAD_SCHEMA,
    Failure,
    LengthCounter,
    LengthLimits,
    SampleCheck,
    add_lengths,
    duplicate_failures,
    record_failures,
)
from scalevlm.validation.images import ImageChecker, ImageLimits


@dataclass
class FileChecks:
    """The checks of every record line of a file, and how many lines were blank."""

    checks: list[SampleCheck]
    blank_lines: int


def read_lines(path: Path, blank: list[int] | None = None) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (line number, parsed JSON or the raw text, schema error or None) for each non-blank line; the numbers
    of blank lines (empty or ASCII whitespace only) are appended to `blank` when given."""
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip(BLANK_BYTES):
                if blank is not None:
                    blank.append(lineno)
                continue
            text = raw.decode("utf-8", errors="surrogateescape")
            try:
                yield lineno, parse_json_line(text), None
            except JSONLineError as e:
                yield lineno, text.rstrip("\r\n"), f"line is not acceptable JSON: {e}"


def parse_line(lineno: int, obj: Any, error: str | None, where: str) -> SampleCheck:
    if error is None:
        try:
            record = Record.from_json(obj, where=f"{where}:{lineno}")
            return SampleCheck(line=lineno, raw=obj, record=record, failures=[])
        except RecordError as e:
            error = str(e)
    return SampleCheck(line=lineno, raw=obj, record=None, failures=[Failure(BAD_SCHEMA, error)])


def check_file(
    path: Path, lengths: LengthLimits, image_limits: ImageLimits, count: LengthCounter, images_root: Path | None = None
) -> FileChecks:
    """All per-sample checks of one file; images resolve relative to `images_root` (default: the file's folder),
    which is also the folder they must not escape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path} (expected a curated JSONL file)")
    blank: list[int] = []
    checks = [parse_line(n, obj, err, str(path)) for n, obj, err in read_lines(path, blank)]
    images = ImageChecker(images_root if images_root is not None else path.parent, image_limits)
    for c in checks:
        if c.record is not None:
            c.failures.extend(record_failures(c.record))
            c.failures.extend(images.check_record_images(c.record.images))
    add_lengths(checks, count, lengths)
    duplicate_failures(checks)
    return FileChecks(checks, len(blank))


def rejected_row(check: SampleCheck) -> dict[str, Any]:
    """A quarantine line: the record as read plus all its reasons and their details."""
    return {
        "id": check.id,
        "line": check.line,
        "reasons": check.reasons,
        "failures": [{"reason": f.reason, "detail": f.detail} for f in check.failures],
        "record": check.raw,
    }


def write_rejected(path: Path, rows: list[dict[str, Any]]) -> int:
    """Canonical JSON lines, sorted by (id, line); a row holding undecodable text is written ASCII-escaped."""
    return write_jsonl(path, sorted(rows, key=lambda r: (r["id"] or "", r["line"])))
