"""Dates from front matter and file names: a chain of tiny parsers, tried in order.

Each parser takes a raw value and the local zone and returns an aware datetime or None
(feedparser style). ``parse_date`` runs the chain and normalizes the first hit to UTC.
Nothing here falls back to "now": no usable date means None. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

MIN_YEAR = 1990
MAX_YEAR = 2100
_EPOCH_MILLIS_FROM = 100_000_000_000  # larger epoch numbers are milliseconds (year > 5000 as s)
_ZERO = timedelta(0)

_Parser = Callable[[object, ZoneInfo], datetime | None]

# 2021-12-08, 2021/12/08 10:48, 2021-12-08T10:48:44.5Z, 2021-12-08 10:48:44 +0800, ... GMT
_NUMERIC = re.compile(
    r"(?P<y>\d{4})[-/.](?P<mo>\d{1,2})[-/.](?P<d>\d{1,2})"
    r"(?:(?:[T\s]+)(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
# 2021年12月8日, 2021年12月8日 10:48, 2021年12月8日10时48分
_CHINESE = re.compile(
    r"(?P<y>\d{4})\s*年\s*(?P<mo>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*[日号]"
    r"(?:\s*(?P<h>\d{1,2})\s*[:：时]\s*(?P<mi>\d{1,2})\s*分?"
    r"(?:\s*[:：]?\s*(?P<s>\d{1,2})\s*秒?)?)?"
)
_COMPACT = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})(?:(?P<h>\d{2})(?P<mi>\d{2})(?P<s>\d{2}))?"
)
_DIGITS = re.compile(r"\d{1,16}")
_JEKYLL_NAME = re.compile(r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})-.")


def _offset(label: str | None, zone: ZoneInfo) -> tzinfo | None:
    """The zone an explicit label names (None if impossible); no label means local time."""
    if not label:
        return zone
    if label.upper() in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if label[0] == "-" else 1
    digits = label[1:].replace(":", "")
    try:
        return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    except ValueError:  # +9999: not less than a day
        return None


def _from_fields(match: re.Match[str], tz: tzinfo) -> datetime | None:
    fields = match.groupdict()
    fraction = (fields.get("f") or "")[:6].ljust(6, "0")
    try:
        return datetime(
            int(fields["y"]),
            int(fields["mo"]),
            int(fields["d"]),
            int(fields.get("h") or 0),
            int(fields.get("mi") or 0),
            int(fields.get("s") or 0),
            int(fraction),
            tzinfo=tz,
        )
    except ValueError:  # month 13, 25 o'clock, offset of a day or more, ...
        return None


def _from_datetime(value: object, zone: ZoneInfo) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _from_date(value: object, zone: ZoneInfo) -> datetime | None:
    if not isinstance(value, date) or isinstance(value, datetime):
        return None
    return datetime(value.year, value.month, value.day, tzinfo=zone)


def _from_epoch(value: object, zone: ZoneInfo) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number: float = int(value.strip())
    elif isinstance(value, int | float):
        number = value
    else:
        return None
    if number != number or abs(number) == float("inf"):  # NaN, infinities
        return None
    seconds = number / 1000 if abs(number) >= _EPOCH_MILLIS_FROM else number
    try:
        # Expressed in ``zone`` so that gmt_is_local never shifts an epoch (it has no label).
        return datetime.fromtimestamp(seconds, zone)
    except (OverflowError, OSError, ValueError):
        return None


def _from_numeric_text(value: object, zone: ZoneInfo) -> datetime | None:
    if not isinstance(value, str):
        return None
    match = _NUMERIC.fullmatch(value.strip())
    if not match:
        return None
    tz = _offset(match["tz"], zone)
    return _from_fields(match, tz) if tz is not None else None


def _from_chinese_text(value: object, zone: ZoneInfo) -> datetime | None:
    if not isinstance(value, str):
        return None
    match = _CHINESE.fullmatch(value.strip())
    return _from_fields(match, zone) if match else None


def _from_compact_text(value: object, zone: ZoneInfo) -> datetime | None:
    """``20211208`` or ``20211208104844``: tried before epoch numbers on strings."""
    if not isinstance(value, str):
        return None
    match = _COMPACT.fullmatch(value.strip())
    return _from_fields(match, zone) if match else None


def _from_rfc2822(value: object, zone: ZoneInfo) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # "-0000" means "zone unknown": the stdlib returns naive, we take local time.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _from_iso(value: object, zone: ZoneInfo) -> datetime | None:
    """Other ISO 8601 spellings the stdlib knows (week dates, basic format)."""
    if not isinstance(value, str) or not value.strip()[:1].isdigit():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


_PARSERS: tuple[_Parser, ...] = (
    _from_datetime,
    _from_date,
    _from_compact_text,
    _from_epoch,
    _from_numeric_text,
    _from_chinese_text,
    _from_rfc2822,
    _from_iso,
)


def _plausible(moment: datetime) -> bool:
    return MIN_YEAR <= moment.year <= MAX_YEAR


def parse_date(value: object, zone: ZoneInfo, *, gmt_is_local: bool = False) -> datetime | None:
    """An aware UTC datetime from a front matter value, or None when there is no usable date.

    ``gmt_is_local``: some outlets label Beijing wall-clock time as GMT; a time explicitly
    labelled GMT/UTC/Z/+0000 is then read as local time in ``zone``. Other offsets stay.
    """
    for parser in _PARSERS:
        found = parser(value, zone)
        if found is None:
            continue
        if gmt_is_local and found.tzinfo is not zone and found.utcoffset() == _ZERO:
            found = found.replace(tzinfo=zone)
        return found.astimezone(UTC) if _plausible(found) else None
    return None


def date_from_filename(filename: str, zone: ZoneInfo) -> datetime | None:
    """Midnight local time of a Jekyll post name ``YYYY-MM-DD-slug.md``, in UTC."""
    name = re.split(r"[\\/]", filename)[-1]
    match = _JEKYLL_NAME.match(name)
    if not match:
        return None
    found = _from_fields(match, zone)
    return found.astimezone(UTC) if found is not None and _plausible(found) else None
