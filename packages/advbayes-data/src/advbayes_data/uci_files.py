"""Readers for the UCI regression files in their original formats.

* Wine Quality (Cortez et al. 2009): ``winequality-{red,white}.csv``, semicolon-separated
  with a quoted header (``"fixed acidity";...;"quality"``), 12 columns.
* Energy Efficiency (Tsanas & Xifara 2012): ``ENB2012_data.xlsx`` (first sheet; header
  ``X1..X8, Y1, Y2``; empty trailing rows and columns ignored), or the same table as CSV.
* California Housing (Pace & Barry 1997): ``cal_housing.data``, 9 comma-separated columns,
  no header (a header line, as some copies add, is skipped).

Each reader returns the header names and a float64 ``(rows, columns)`` array, and raises
``ValueError`` naming the file for anything else (wrong column count, non-numbers, NaN).
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "CAL_HOUSING_COLUMNS",
    "read_cal_housing",
    "read_delimited",
    "read_enb2012",
    "read_enb2012_xlsx",
]

CAL_HOUSING_COLUMNS = (
    "longitude",
    "latitude",
    "housingMedianAge",
    "totalRooms",
    "totalBedrooms",
    "population",
    "households",
    "medianIncome",
    "medianHouseValue",
)
"""The columns of ``cal_housing.data`` (from ``cal_housing.domain``), in order."""


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _to_array(rows: list[list[str]], path: Path, columns: int, first_line: int) -> np.ndarray:
    if not rows:
        raise ValueError(f"{path}: no data rows")
    for offset, row in enumerate(rows):
        if len(row) != columns:
            raise ValueError(
                f"{path}: line {first_line + offset} has {len(row)} fields, expected {columns}"
            )
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: a field is not a number: {err}") from err
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: NaN or infinite values")
    return values


def read_delimited(
    path: str | os.PathLike[str], columns: int, *, header: bool | None = None
) -> tuple[tuple[str, ...] | None, np.ndarray]:
    """Read a numeric CSV whose delimiter (``;`` or ``,``) is detected from its first line.

    Args:
        path: The file.
        columns: The expected number of columns.
        header: Whether the first line is a header; None detects it (a line with a field
            that is not a number). Quotes around header names are removed.

    Returns:
        ``(names, values)``: the header names (None without a header) and ``(rows, columns)``
        float64 values. Blank lines are skipped.

    Raises:
        ValueError: A row with another number of fields, a non-number, NaN/inf, or no rows.

    Examples:
        >>> names, values = read_delimited("uci/winequality-red.csv", 12)  # doctest: +SKIP
        >>> names[-1], values.shape  # doctest: +SKIP
        ('quality', (1599, 12))
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    rows = [
        [field.strip() for field in row]
        for row in csv.reader(io.StringIO(text), delimiter=delimiter)
        if any(field.strip() for field in row)
    ]
    if not rows:
        raise ValueError(f"{path}: empty file")
    if header is None:
        header = not all(_is_number(field) for field in rows[0])
    names: tuple[str, ...] | None = None
    if header:
        names = tuple(rows[0])
        if len(names) != columns:
            raise ValueError(f"{path}: header has {len(names)} columns, expected {columns}")
        rows = rows[1:]
    return names, _to_array(rows, path, columns, 2 if header else 1)


def read_enb2012_xlsx(path: str | os.PathLike[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Read the Energy Efficiency workbook: its first sheet, a header row, then numbers.

    Args:
        path: ``ENB2012_data.xlsx``.

    Returns:
        ``(names, values)``: ``("X1", ..., "X8", "Y1", "Y2")`` and ``(768, 10)`` float64 for the
        original file. Columns after the header's last name and empty rows are ignored.

    Raises:
        ValueError: Not a readable workbook, a header other than 10 names, a partly empty
            row, a non-number, or no rows.
    """
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    path = Path(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .xlsx workbook: {err}") from err
    try:
        sheet = workbook.worksheets[0]
        rows = [row for row in sheet.iter_rows(values_only=True) if any(v is not None for v in row)]
    finally:
        workbook.close()
    if not rows:
        raise ValueError(f"{path}: the first sheet is empty")
    head = list(rows[0])
    while head and head[-1] is None:
        head.pop()
    names = tuple(str(v).strip() for v in head)
    if len(names) != 10:
        raise ValueError(f"{path}: header has {len(names)} columns, expected 10 (X1..X8, Y1, Y2)")
    body: list[list[str]] = []
    for number, row in enumerate(rows[1:], start=2):
        cells = list(row[: len(names)]) + [None] * max(0, len(names) - len(row))
        if any(v is None for v in cells):
            raise ValueError(f"{path}: row {number} has empty cells among the first 10 columns")
        body.append([str(v) for v in cells])
    return names, _to_array(body, path, len(names), 2)


def read_enb2012(path: str | os.PathLike[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Read the Energy Efficiency table from ``.xlsx`` or ``.csv`` (by the file's suffix).

    Returns:
        ``(names, values)`` as :func:`read_enb2012_xlsx`.

    Raises:
        ValueError: As :func:`read_enb2012_xlsx` / :func:`read_delimited`; or a CSV without
            its header.
    """
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return read_enb2012_xlsx(path)
    names, values = read_delimited(path, 10, header=True)
    return tuple(names or ()), values


def read_cal_housing(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``cal_housing.data``: 9 comma-separated numeric columns (``CAL_HOUSING_COLUMNS``).

    Returns:
        ``(20640, 9)`` float64 for the original file.

    Raises:
        ValueError: Another number of columns, a non-number, NaN/inf, or no rows.
    """
    _, values = read_delimited(path, len(CAL_HOUSING_COLUMNS))
    return values
