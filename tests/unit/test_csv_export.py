"""CSV exports neutralise spreadsheet formulas: a cell that a spreadsheet would evaluate
(=, +, -, @, tab, CR first) is written with a leading apostrophe, everything else unchanged."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siaga112.api.csv_export import FORMULA_STARTS, csv_text, neutralise


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x","Jatiasih")', '\'=HYPERLINK("http://x","Jatiasih")'),
        ("+62 SUM(A1)", "'+62 SUM(A1)"),
        ("-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"),
        ("@SUM(1,2)", "'@SUM(1,2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Jatiasih", "Jatiasih"),
        ("", ""),
        ("2032-05-04T08:00:00+07:00", "2032-05-04T08:00:00+07:00"),
        (3, 3),
        (-2.5, -2.5),
        (None, None),
    ],
)
def test_formula_cells_are_escaped_and_others_left_alone(value: object, expected: object) -> None:
    assert neutralise(value) == expected


@given(st.lists(st.text(max_size=20), min_size=1, max_size=5))
def test_no_exported_cell_starts_a_formula_and_each_reads_back(values: list[str]) -> None:
    fields = [f"c{i}" for i in range(len(values))]
    text = csv_text(fields, [dict(zip(fields, values, strict=True))])
    header, row = list(csv.reader(io.StringIO(text, newline="")))
    assert header == fields
    for cell, original in zip(row, values, strict=True):
        assert not cell.startswith(FORMULA_STARTS)
        assert cell == original or cell == "'" + original
