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
from functools import lru_cache
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
    r"\s*(?P<tz>Z|(?:UTC|GMT)(?:\s*[+-]\d{1,2}(?::?\d{2})?)?|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
# 2021年12月8日, 2021年12月8日 10:48, 2021年12月8日10时48分, 2021年12月8日 下午3:30
_CHINESE = re.compile(
    r"(?P<y>\d{4})\s*年\s*(?P<mo>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*[日号]"
    r"(?:\s*(?P<half>上午|早上|凌晨|下午|晚上)?"
    r"\s*(?P<h>\d{1,2})\s*[:：时点]\s*(?P<mi>\d{1,2})\s*分?"
    r"(?:\s*[:：]?\s*(?P<s>\d{1,2})\s*秒?)?)?"
)
_AFTERNOON = frozenset({"下午", "晚上"})
_COMPACT = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})(?:(?P<h>\d{2})(?P<mi>\d{2})(?P<s>\d{2}))?"
)
_DIGITS = re.compile(r"\d{1,16}")
_JEKYLL_NAME = re.compile(r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})-.")


def _offset(label: str | None, zone: ZoneInfo) -> tzinfo | None:
    """The zone an explicit label names (None if impossible); no label means local time."""
    if not label:
        return zone
    offset = label.upper().removeprefix("UTC").removeprefix("GMT").strip()
    if offset in ("", "Z"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    hours, _, minutes = offset[1:].partition(":")
    if not minutes and len(hours) > 2:  # +0800
        hours, minutes = hours[:-2], hours[-2:]
    try:
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
    except ValueError:  # +9999: not less than a day
        return None


# A zone word in a date: RFC 2822 knows a few US ones ("CST" is UTC-6 there), but a Beijing
# site writing "CST" (Java's Date.toString does) means China Standard Time, its own zone.
_ZONE_WORD = re.compile(r"(?<![A-Za-z])[A-Z]{3,5}(?![A-Za-z])")
_NOT_LOCAL_NAMES = frozenset({"UTC", "GMT", "UT", "Z"})


@lru_cache(maxsize=16)
def _local_zone_names(zone: ZoneInfo) -> frozenset[str]:
    """The abbreviations ``zone`` goes by (winter and summer): "CST" for Asia/Shanghai."""
    names = {zone.tzname(datetime(2024, month, 1)) for month in (1, 7)}
    return frozenset(name for name in names if name and name.isalpha()) - _NOT_LOCAL_NAMES


def _from_fields(match: re.Match[str], tz: tzinfo) -> datetime | None:
    fields = match.groupdict()
    fraction = (fields.get("f") or "")[:6].ljust(6, "0")
    hour = int(fields.get("h") or 0)
    if fields.get("half") in _AFTERNOON and hour < 12:
        hour += 12
    try:
        return datetime(
            int(fields["y"]),
            int(fields["mo"]),
            int(fields["d"]),
            hour,
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


def _from_local_zone_word(value: object, zone: ZoneInfo) -> datetime | None:
    """``Tue, 05 Mar 2024 09:30:00 CST`` or ``2024-03-05 09:30:00 CST`` with "CST" the
    configured zone's own name: local time, whatever the word means elsewhere."""
    if not isinstance(value, str) or not any(name in value for name in _local_zone_names(zone)):
        return None
    words = list(_ZONE_WORD.finditer(value))
    if not words or words[-1].group() not in _local_zone_names(zone):
        return None
    zoneless = value[: words[-1].start()] + value[words[-1].end() :]
    return _from_numeric_text(zoneless, zone) or _from_rfc2822(zoneless, zone)


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
    _from_local_zone_word,
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
