"""CSV exports that are safe to open in a spreadsheet.

Exported cells can hold caller-supplied text (a PIDF-LO civic A3 becomes an incident's
kecamatan, addresses, agency names): a cell that starts like a formula (``=``, ``+``, ``-``,
``@``, tab, carriage return) would be evaluated by Excel or LibreOffice (CSV injection, OWASP).
Such a cell is written with a leading apostrophe, which spreadsheets show as text. Every CSV
export goes through :func:`csv_text`; JSON answers carry the data unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` with a leading apostrophe when it is text a spreadsheet would evaluate; other
    values (numbers, None, plain text) unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A header line and one line per row, every cell neutralised. Lines end in CRLF (RFC
    4180), which also makes the writer quote a cell holding a lone CR or LF rather than let it
    break the row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[neutralise(f) for f in fieldnames])
    writer.writeheader()
    writer.writerows({neutralise(k): neutralise(v) for k, v in row.items()} for row in rows)
    return out.getvalue()
