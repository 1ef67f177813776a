"""CSV cells a spreadsheet will not run: a text cell beginning with =, +, -, @, a tab or a
carriage return is a formula to Excel, LibreOffice and Sheets (`=HYPERLINK(...)` in an EC2
Name tag, say). Such cells get a leading apostrophe, as OWASP's CSV-injection advice says;
numbers stay numbers."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_row(row: dict) -> dict:
    return {key: csv_cell(value) for key, value in row.items()}
