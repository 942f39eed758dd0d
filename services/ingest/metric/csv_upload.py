"""Receiving a CSV body of metric points: spooled and checked as it arrives, then read back
point by point (one row: region, metric, period or timestamp, value, unit, dimensions)."""

from __future__ import annotations

import codecs
import csv
import io
import re
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

from fastapi import Request

from services.kit.errors import Unprocessable

CSV_COLUMNS = ("region", "metric", "period", "timestamp", "value", "unit", "dimensions")
SPOOL_IN_MEMORY = 4 * 1024 * 1024
LINE_BREAK = re.compile(r"\r\n|\r|\n")


async def receive_csv(request: Request, max_line: int) -> IO[bytes]:
    """The whole CSV body, spooled (memory, then a temporary file) before any database work.

    While it arrives it is checked as UTF-8 text whose lines are at most ``max_line``
    characters and hold no NUL, so a malformed body is refused before anything is stored and
    no database connection waits on a slow client.
    """
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    line, line_length, after_cr = 1, 0, False
    try:
        async for chunk in request.stream():
            spool.write(chunk)
            text = decoder.decode(chunk)
            if after_cr and text.startswith("\n"):
                text = text[1:]  # the \n of a \r\n split between two chunks
            if text:
                after_cr = text.endswith("\r")
            if "\x00" in text:
                at = line + len(LINE_BREAK.findall(text[: text.index("\x00")]))
                raise Unprocessable(f"CSV line {at} contains a NUL character.")
            # Lines end as the reader below splits them: \n, \r\n or a lone \r.
            *complete, rest = LINE_BREAK.split(text)
            for segment in complete:
                if line_length + len(segment) > max_line:
                    raise _line_too_long(line, max_line)
                line, line_length = line + 1, 0
            line_length += len(rest)
            if line_length > max_line:
                raise _line_too_long(line, max_line)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        spool.close()
        raise Unprocessable("The CSV body is not UTF-8 text.") from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def _line_too_long(line: int, max_line: int) -> Unprocessable:
    return Unprocessable(
        f"CSV line {line} is longer than {max_line:,} characters (a field holds no newline; "
        "is this a CSV file?).",
        limit=max_line,
    )


async def _csv_lines(spool: IO[bytes]) -> AsyncIterator[str]:
    with io.TextIOWrapper(spool, encoding="utf-8-sig", newline="") as text:
        for line in text:
            yield line.rstrip("\r\n")


async def csv_points(spool: IO[bytes]) -> AsyncIterator[tuple[int, Any]]:
    header: list[str] | None = None
    row_number = 0
    async for line in _csv_lines(spool):
        if not line.strip():
            continue
        fields = next(csv.reader([line]))
        if header is None:
            header = [name.strip().lower() for name in fields]
            unknown = sorted(set(header) - set(CSV_COLUMNS))
            if unknown or not {"region", "metric", "value"} <= set(header):
                raise Unprocessable(
                    f"CSV header must name region, metric, period or timestamp, value "
                    f"(optional unit, dimensions); got {', '.join(header)}",
                )
            continue
        row_number += 1
        yield row_number, _csv_point(header, fields)
    if header is None:
        raise Unprocessable("The CSV body is empty: expected a header row and points.")


def _csv_point(header: list[str], fields: list[str]) -> dict[str, Any] | str:
    if len(fields) != len(header):
        return f"row has {len(fields)} fields, the header {len(header)}"
    point: dict[str, Any] = {
        name: value.strip() for name, value in zip(header, fields, strict=True) if value.strip()
    }
    dimensions = point.pop("dimensions", None)
    if dimensions:
        pairs = [pair.split("=", 1) for pair in dimensions.split(";") if pair]
        point["dimensions"] = {pair[0].strip(): pair[-1].strip() for pair in pairs}
    return point
