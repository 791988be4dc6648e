"""OpenCelliD rows: what is accepted into the cell table and what is counted as bad."""

from __future__ import annotations

import pytest

from siaga112.locations.cells import parse_cell_row

GOOD = "LTE,510,10,161,187448654,0,106.97432,-6.28211,1200,15,1,1459813819,1700000000,-95"


def test_good_row_becomes_a_stage_record() -> None:
    row = parse_cell_row(GOOD.split(","))
    assert row == (
        "LTE",
        510,
        10,
        161,
        187448654,
        0,
        106.97432,
        -6.28211,
        1200,
        15,
        True,
        1459813819,
        1700000000,
        -95,
    )


def test_nr_cell_identity_of_36_bits_and_empty_optionals_are_accepted() -> None:
    row = parse_cell_row(
        [
            "NR",
            "510",
            "89",
            "11259375",
            "68719476735",
            "",
            "106.8",
            "-6.2",
            "300.4",
            "",
            "",
            "",
            "",
            "",
        ]
    )
    assert row[4] == (1 << 36) - 1
    assert row[8] == 300
    assert row[5] is None
    assert row[9] is None
    assert row[10] is None
    assert row[12] is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("LTE,510,10", "3 fields"),
        (GOOD.replace("LTE", "WIMAX"), "unknown radio"),
        (GOOD.replace("106.97432", "200"), "out of range"),
        (GOOD.replace("-6.28211", "nan"), "out of range"),
        (GOOD.replace(",1200,", ",-5,"), "range"),
        (GOOD.replace("187448654", "99999999999999"), "outside"),
        (GOOD.replace(",510,", ",5x0,"), "invalid literal"),
        (GOOD.replace(",1,1459813819", ",yes,1459813819"), "changeable"),
    ],
)
def test_bad_rows_raise_value_error_saying_why(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cell_row(line.split(","))
