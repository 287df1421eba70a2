"""Provides loading and validation of the competition CSVs (train/dev/test) and the ``check-data`` command.

Every load validates: required columns, empty or duplicate fnames, empty dialogues/summaries, the
encoding (UTF-8, UTF-8 with BOM, cp949), a broken CSV (unclosed quote), and normalises the noise the
organizers announced (CRLF, literal ``\\n``, ``<br>``), reporting each as a count. Errors name the file,
the line and fname, the field, and what to do. Torch-free.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.contract import SPLIT_FILES, ExitCode

SPLITS = ("train", "dev", "test")
# test.csv has neither summary nor topic (the whole point of the competition).
REQUIRED_COLUMNS = {"train": ("fname", "dialogue", "summary"), "dev": ("fname", "dialogue", "summary"),
                    "test": ("fname", "dialogue")}
MASK_TOKENS: tuple[str, ...] = (
    *(f"#Person{i}#" for i in range(1, 8)),
    "#PhoneNumber#", "#Address#", "#DateOfBirth#", "#PassportNumber#", "#SSN#", "#CardNumber#", "#CarNumber#",
    "#Email#",
)
# A masked span as the competition writes them (#Person1#, #PhoneNumber#): the one pattern, also
# used by the manager's per-sample view to leave masks out of its word checks.
MASK_PATTERN = re.compile(r"#[A-Za-z][A-Za-z0-9 _]{0,30}#")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_LEADING_SPEAKER = re.compile(r"^#Person\d#:")
# A quote left open swallows the following records into one field; their "train_12," starts give it away.
_SWALLOWED_ROW = re.compile(r"\n(?:train|dev|test)_\d+,")


class DataError(ValueError):
    """A data problem the user fixes in the CSV (exit status 2); the message names file, row, field and fix."""


@dataclass(frozen=True)
class Sample:
    """One dialogue: ``summary`` and ``topic`` are None where the split has none (test)."""

    fname: str
    dialogue: str
    summary: str | None = None
    topic: str | None = None


@dataclass
class DataReport:
    """What loading one CSV found and normalised (counts, not errors)."""

    path: str
    encoding: str
    rows: int
    crlf: int = 0
    literal_newlines: int = 0
    br_tags: int = 0
    unknown_masks: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """Human-readable lines for ``check-data`` and run logs."""
        lines = [f"{self.path}: {self.rows} rows, encoding {self.encoding}"]
        fixes = [f"{n} {what}" for n, what in ((self.crlf, "CRLF line ends"),
                                                (self.literal_newlines, "literal '\\n'"),
                                                (self.br_tags, "<br> tags")) if n]
        if fixes:
            lines.append("  normalised to newlines: " + ", ".join(fixes))
        if self.unknown_masks:
            listed = ", ".join(f"{tok} x{n}" for tok, n in sorted(self.unknown_masks.items()))
            lines.append(f"  unknown masked tokens: {listed} (known: {', '.join(MASK_TOKENS)})")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return lines


# --- reading ------------------------------------------------------------------------------------


def _decode(path: Path, raw: bytes, warnings: list[str]) -> tuple[str, str]:
    """Return (text, encoding label); the label says what was detected."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="strict"), "UTF-8 with BOM"
    try:
        return raw.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as utf8_err:
        try:
            text = raw.decode("cp949")
        except UnicodeDecodeError:
            line = raw[: utf8_err.start].count(b"\n") + 1
            raise DataError(
                f"{path}: line {line}: bytes are neither UTF-8 nor cp949 (byte {utf8_err.start}); "
                "re-save the file as UTF-8"
            ) from None
        warnings.append("file is cp949 (EUC-KR), read as such; re-save it as UTF-8 to be safe")
        return text, "cp949"


def _records(path: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Parse CSV text into the header and (first physical line, fields) per record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as err:
        first_field = text.split("\n")[start - 1].split(",")[0] if start <= text.count("\n") + 1 else ""
        fname = f" (fname {first_field})" if first_field and '"' not in first_field else ""
        raise DataError(
            f"{path}: line {start}{fname} (the record starting there; parser stopped at line {reader.line_num}): "
            f"broken CSV ({err}); look for an unclosed or stray '\"' in that row and quote the field properly"
        ) from None
    if not records:
        raise DataError(f"{path}: empty file; expected a header line such as fname,dialogue,summary,topic")
    header = [h.strip() for h in records[0][1]]
    return header, records[1:]


def read_table(path: str | Path) -> tuple[list[dict[str, Any]], DataReport]:
    """Read a CSV into row dicts (with ``_line``: the record's first physical line), detecting the encoding.

    A leading unnamed index column (``,fname,summary`` as in sample_submission.csv) is dropped.

    Raises:
        DataError: missing file, undecodable bytes, broken quoting, or a row with the wrong field count.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check data.dir, or run `python -m engine synth --out {path.parent}`") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a CSV file") from None
    report = DataReport(path=str(path), encoding="", rows=0)
    text, report.encoding = _decode(path, raw, report.warnings)
    report.crlf = text.count("\r\n")
    header, records = _records(path, text.replace("\r\n", "\n"))
    skip_index = bool(header) and header[0] == ""
    columns = header[1:] if skip_index else header
    dupes = [c for c, n in Counter(columns).items() if n > 1]
    if dupes:
        raise DataError(f"{path}: line 1: column {dupes[0]!r} appears twice in the header; rename or remove one")
    rows: list[dict[str, Any]] = []
    for line, fields in records:
        if not fields or fields == [""]:
            continue  # a blank line
        if len(fields) != len(header):
            joined = ",".join(fields)
            hint = ("an unclosed quote probably swallowed the following rows" if _SWALLOWED_ROW.search(joined)
                    else "quote fields that contain commas or newlines")
            raise DataError(
                f"{path}: line {line}: expected {len(header)} fields ({','.join(header)}), got {len(fields)}; {hint}"
            )
        values = fields[1:] if skip_index else fields
        row: dict[str, Any] = dict(zip(columns, values))
        row["_line"] = line
        rows.append(row)
    report.rows = len(rows)
    return rows, report


# --- validation and normalisation ---------------------------------------------------------------


def _normalize(text: str, report: DataReport, apply: bool) -> str:
    literal = text.count("\\n")
    brs = len(_BR.findall(text))
    report.literal_newlines += literal
    report.br_tags += brs
    if not apply:
        return text
    text = _BR.sub("\n", text.replace("\\n", "\n"))
    # Some real lines end in a trailing space; it only costs tokens.
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def _where(path: Path, row: dict[str, Any]) -> str:
    fname = row.get("fname") or ""
    return f"{path}: line {row['_line']}" + (f" (fname {fname})" if fname else "")


def load_split(data_dir: str | Path, split: str, normalize: bool = True) -> tuple[list[Sample], DataReport]:
    """Load and validate ``<data_dir>/<split>.csv``.

    Args:
        data_dir: directory with train.csv, dev.csv, test.csv.
        split: ``train``, ``dev`` or ``test`` (test needs only fname and dialogue).
        normalize: turn CRLF, literal ``\\n`` and ``<br>`` into newlines and strip trailing spaces
            (counts are reported either way).

    Returns:
        The samples in file order and a :class:`DataReport`.

    Raises:
        DataError: naming file, line/fname, field and the fix.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    path = Path(data_dir) / SPLIT_FILES[split]
    rows, report = read_table(path)
    header = [k for k in (rows[0] if rows else {}) if k != "_line"]
    if not rows:
        raise DataError(f"{path}: no data rows; the file has only a header (or nothing)")
    missing = [c for c in REQUIRED_COLUMNS[split] if c not in header]
    if missing:
        raise DataError(
            f"{path}: line 1: missing column(s) {', '.join(missing)} (header is {','.join(header)}); "
            f"{SPLIT_FILES[split]} needs {','.join(REQUIRED_COLUMNS[split])}"
        )
    has_topic = "topic" in header
    if split != "test" and not has_topic:
        report.warnings.append("no 'topic' column: prompts are built without a topic (prompt.topic has no effect)")
    seen: dict[str, int] = {}
    samples: list[Sample] = []
    unknown: Counter[str] = Counter()
    unmarked = []
    for row in rows:
        fname = row["fname"].strip()
        if not fname:
            raise DataError(f"{_where(path, row)}: field 'fname' is empty; give every row a unique fname")
        if fname in seen:
            raise DataError(
                f"{_where(path, row)}: duplicate fname {fname!r} (first at line {seen[fname]}); "
                "fnames must be unique; rename or drop one row"
            )
        seen[fname] = row["_line"]
        for column in REQUIRED_COLUMNS[split][1:]:
            if not row[column].strip():
                raise DataError(f"{_where(path, row)}: field '{column}' is empty; fill it in or drop the row")
        dialogue = _normalize(row["dialogue"].replace("\r", "\n") if normalize else row["dialogue"], report, normalize)
        summary = _normalize(row["summary"], report, normalize) if "summary" in header and row["summary"].strip() else None
        topic = row["topic"].strip() or None if has_topic else None
        for text in (dialogue, summary or ""):
            unknown.update(tok for tok in MASK_PATTERN.findall(text) if tok not in MASK_TOKENS)
        if any(line.strip() and not _LEADING_SPEAKER.match(line) for line in dialogue.split("\n")):
            unmarked.append(fname)
        samples.append(Sample(fname=fname, dialogue=dialogue, summary=summary, topic=topic))
    report.unknown_masks = dict(unknown)
    if unmarked:
        report.warnings.append(
            f"{len(unmarked)} dialogue(s) have lines without a leading '#PersonN#:' speaker marker "
            f"(first: {', '.join(unmarked[:3])})"
        )
    return samples, report


def load_references(path: str | Path) -> dict[str, list[str]]:
    """Read references for scoring: ``fname`` plus ``summary`` and/or ``summary1``, ``summary2``, ... columns.

    Returns:
        fname -> non-empty reference summaries in column order (summary, summary1, summary2, ...).

    Raises:
        DataError: missing columns, duplicate fnames, or a row without any reference.
    """
    path = Path(path)
    rows, _report = read_table(path)
    header = [k for k in (rows[0] if rows else {}) if k != "_line"]
    ref_cols = sorted((c for c in header if re.fullmatch(r"summary\d*", c)), key=lambda c: int(c[7:] or -1))
    if "fname" not in header or not ref_cols:
        raise DataError(f"{path}: line 1: need columns fname and summary (or summary1, summary2, ...); header is {','.join(header)}")
    refs: dict[str, list[str]] = {}
    for row in rows:
        fname = row["fname"].strip()
        if fname in refs:
            raise DataError(f"{_where(path, row)}: duplicate fname {fname!r}; keep one row per dialogue")
        texts = [row[c].strip() for c in ref_cols if row[c].strip()]
        if not texts:
            raise DataError(f"{_where(path, row)}: no reference summary in {', '.join(ref_cols)}; fill one in")
        refs[fname] = texts
    return refs


# --- command ------------------------------------------------------------------------------------


def check_data_main(args: Any) -> int:
    """``python -m engine check-data DIR [--json]``: report every split; 0 ok, 2 when any file has a problem."""
    results: list[dict[str, Any]] = []
    for split in SPLITS:
        try:
            _samples, report = load_split(args.dir, split)
            results.append({"split": split, "ok": True, **asdict(report)})
        except DataError as err:
            results.append({"split": split, "ok": False, "error": str(err)})
    if getattr(args, "json", False):
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        for result in results:
            if result["ok"]:
                fields = {k: v for k, v in result.items() if k not in ("split", "ok")}
                print("\n".join(DataReport(**fields).summary_lines()))
            else:
                print(f"ERROR {result['error']}")
    return ExitCode.OK if all(r["ok"] for r in results) else ExitCode.BAD_INPUT
