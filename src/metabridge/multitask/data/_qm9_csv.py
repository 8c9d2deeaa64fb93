"""CSV parsing for :mod:`metabridge.multitask.data.qm9`: finding qm9pack's ``qm9_part*.csv`` files and
reading the raw fields of one of them (numbers and list-valued fields are converted by the caller)."""

from __future__ import annotations

import csv
from pathlib import Path

from metabridge.data.spec import DatasetFormatError


def csv_files(csv_dir: Path) -> list[Path]:
    """The ``qm9_part*.csv`` files of ``csv_dir`` in part order (part2 before part10)."""
    if not csv_dir.is_dir():
        raise FileNotFoundError(
            f"QM9 CSV folder {csv_dir} does not exist: pass csv_dir= the folder of qm9pack's "
            f"qm9_part*.csv files, or install them with `pip install 'metabridge[qm9]'`."
        )
    files = sorted(csv_dir.glob("qm9_part*.csv"), key=lambda p: (len(p.name), p.name))
    if not files:
        raise FileNotFoundError(
            f"no qm9_part*.csv in {csv_dir}: pass csv_dir= the folder of qm9pack's CSV files, "
            f"or install them with `pip install 'metabridge[qm9]'`."
        )
    return files


def strip_list(text: str) -> str:
    """A list-valued CSV field without brackets and quotes, Mathematica's ``*^`` exponents as ``e``."""
    return text.replace("[", "").replace("]", "").replace("'", "").replace('"', "").replace("*^", "e")


def read_csv_file(
    path: Path, columns: tuple[str, ...]
) -> tuple[list[int], list[int], list[str], list[str], list[list[str]]]:
    """``(index, natoms, elements, xyz, values)`` per row of one CSV file; ``columns`` are the required
    columns: Index, N_atoms, Elements, XYZ_Ang, then the targets whose raw strings go to ``values``."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetFormatError(f"{path} is empty; it is not a qm9pack QM9 CSV file.") from None
        missing = [c for c in columns if c not in header]
        if missing:
            raise DatasetFormatError(
                f"{path} lacks the column(s) {', '.join(missing)}: it is not a qm9pack QM9 CSV "
                f"file (expected columns include {', '.join(columns)})."
            )
        cols = [header.index(c) for c in columns]
        width = max(cols) + 1
        index, natoms, elements, xyz, values = [], [], [], [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < width:
                raise DatasetFormatError(f"{path}, line {line}: {len(row)} fields, expected at least {width}.")
            try:
                index.append(int(row[cols[0]]))
                natoms.append(int(row[cols[1]]))
            except ValueError as e:
                raise DatasetFormatError(f"{path}, line {line}: Index/N_atoms are not integers ({e}).") from e
            elements.append(row[cols[2]])
            xyz.append(row[cols[3]])
            values.append([row[c] for c in cols[4:]])
    return index, natoms, elements, xyz, values
