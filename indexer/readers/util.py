"""Helpers shared by the readers: decoding, ISO dates, file listing, locating spans in text."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Iterable

from indexer.errors import ReaderError
from indexer.readers.io import ERRORS

# Tried in order by iso_date; two-digit years follow Python's %y rule (69-99 -> 19xx).
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%m/%d/%Y", "%m/%d/%y", "%d %B %Y", "%B %d, %Y",
                "%d %b %Y", "%b %d, %Y", "%Y/%m/%d", "%d.%m.%Y")


def decode(data: bytes) -> str:
    """UTF-8 text, or Windows-1252 for legacy files (the BVA decisions use its § and curly quotes)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors=ERRORS)  # its 5 undefined bytes are counted like bad UTF-8


def read_text(path: Path) -> str:
    """A text file decoded with `decode`, newlines normalised to \\n."""
    return normalise_newlines(decode(path.read_bytes()))


def normalise_newlines(text: str) -> str:
    """\\r\\n and lone \\r become \\n, so offsets mean the same on every platform."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def iso_date(value: str | None, formats: Iterable[str] = DATE_FORMATS) -> str | None:
    """An ISO date (YYYY-MM-DD; YYYY-MM or YYYY kept as they are) from a date string, or None if none parses."""
    if value is None:
        return None
    value = " ".join(str(value).split())
    if re.fullmatch(r"\d{4}(-\d{2})?", value):
        return value
    for fmt in formats:
        try:
            return datetime.strptime(value, fmt).date().isoformat()
        except ValueError:
            continue
    # ISO strings with a time zone or fractions: the date part is all a facet needs
    m = re.match(r"(\d{4}-\d{2}-\d{2})T", value)
    return m.group(1) if m else None


def long_date(iso: str | None) -> str | None:
    """A date for people ("April 20, 2000"; a bare year or YYYY-MM kept readable), from an ISO date."""
    if not iso:
        return None
    for fmt, out in (("%Y-%m-%d", "%B {day}, %Y"), ("%Y-%m", "%B %Y"), ("%Y", "%Y")):
        try:
            parsed = datetime.strptime(iso, fmt)
        except ValueError:
            continue
        return parsed.strftime(out).replace("{day}", str(parsed.day))  # no zero padding on any platform
    return iso


def files_under(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files under a directory (recursively) with one of the suffixes, sorted; or the file itself."""
    if path.is_file():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
    if not found:
        raise ReaderError(f"no {' or '.join(suffixes)} files under this directory", str(path))
    return found


def locate(text: str, needle: str, start: int = 0) -> tuple[int, int] | None:
    """Span of needle in text at or after start (else anywhere), allowing any whitespace between words."""
    if not needle.strip():
        return None
    for origin in (start, 0):
        i = text.find(needle, origin)
        if i >= 0:
            return i, i + len(needle)
    # sentences split out of a decision often differ from it only in line breaks and spacing
    pattern = r"\s+".join(re.escape(w) for w in needle.split())
    for origin in (start, 0):
        m = re.compile(pattern).search(text, origin)
        if m:
            return m.span()
    return None
