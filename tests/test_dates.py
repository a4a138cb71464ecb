"""feeds.dates: every spelling the article sources use, and the junk they also contain."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from feeds.dates import date_from_filename, parse_date

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


PARSED = [
    ("rfc2822-gmt", "Wed, 04 Aug 2021 17:49:00 GMT", utc(2021, 8, 4, 17, 49)),
    ("rfc2822-offset", "Wed, 04 Aug 2021 17:49:00 +0800", utc(2021, 8, 4, 9, 49)),
    ("rfc2822-no-weekday", "04 Aug 2021 17:49 +0000", utc(2021, 8, 4, 17, 49)),
    ("rfc2822-unknown-zone-is-local", "04 Aug 2021 17:49:00 -0000", utc(2021, 8, 4, 9, 49)),
    ("iso-offset", "2021-12-08T10:48:44+08:00", utc(2021, 12, 8, 2, 48, 44)),
    ("iso-z", "2021-12-08T10:48:44Z", utc(2021, 12, 8, 10, 48, 44)),
    ("iso-no-seconds", "2021-12-08T10:48+08:00", utc(2021, 12, 8, 2, 48)),
    ("iso-fraction", "2021-12-08T10:48:44.250+08:00", utc(2021, 12, 8, 2, 48, 44, 250_000)),
    ("iso-zoneless-is-local", "2021-12-08T10:48:44", utc(2021, 12, 8, 2, 48, 44)),
    ("jekyll-offset", "2021-12-08 10:48:44 +0800", utc(2021, 12, 8, 2, 48, 44)),
    ("jekyll-zoneless", "2021-12-08 10:48:44", utc(2021, 12, 8, 2, 48, 44)),
    ("jekyll-padded", "  2021-12-08 10:48:44  ", utc(2021, 12, 8, 2, 48, 44)),
    ("slashes", "2021/12/08 10:48", utc(2021, 12, 8, 2, 48)),
    ("date-only", "2021-12-08", utc(2021, 12, 7, 16)),
    ("chinese", "2021年12月8日 10:48", utc(2021, 12, 8, 2, 48)),
    ("chinese-date-only", "2021年12月8日", utc(2021, 12, 7, 16)),
    ("chinese-hours-minutes", "2021年12月8日10时48分", utc(2021, 12, 8, 2, 48)),
    ("chinese-afternoon", "2021年12月8日 下午3:30", utc(2021, 12, 8, 7, 30)),
    ("chinese-morning", "2021年12月8日 上午9点30分", utc(2021, 12, 8, 1, 30)),
    ("rfc2822-cst-is-china", "Wed, 08 Dec 2021 10:48:44 CST", utc(2021, 12, 8, 2, 48, 44)),
    ("java-date-cst", "Wed Dec 08 10:48:44 CST 2021", utc(2021, 12, 8, 2, 48, 44)),
    ("numeric-cst", "2021-12-08 10:48:44 CST", utc(2021, 12, 8, 2, 48, 44)),
    ("utc-plus-hours", "2021-12-08 10:48:44 UTC+8", utc(2021, 12, 8, 2, 48, 44)),
    ("gmt-plus-offset", "2021-12-08T10:48:44 GMT+08:00", utc(2021, 12, 8, 2, 48, 44)),
    ("compact", "20211208", utc(2021, 12, 7, 16)),
    ("epoch-seconds", 1638931724, utc(2021, 12, 8, 2, 48, 44)),
    ("epoch-millis", 1638931724000, utc(2021, 12, 8, 2, 48, 44)),
    ("epoch-string", "1638931724", utc(2021, 12, 8, 2, 48, 44)),
    ("epoch-float", 1638931724.5, utc(2021, 12, 8, 2, 48, 44, 500_000)),
    ("naive-datetime-is-local", datetime(2021, 12, 8, 10, 48), utc(2021, 12, 8, 2, 48)),
    (
        "aware-datetime-kept",
        datetime(2021, 12, 8, 10, 48, tzinfo=timezone(timedelta(hours=9))),
        utc(2021, 12, 8, 1, 48),
    ),
    ("date-is-local-midnight", date(2021, 12, 8), utc(2021, 12, 7, 16)),
]

JUNK = [
    ("invalid-date", "Invalid Date"),
    ("empty", ""),
    ("blank", "   "),
    ("offset-only", " +0800"),
    ("none", None),
    ("list", ["2021-12-08"]),
    ("dict", {"date": "2021-12-08"}),
    ("true", True),
    ("false", False),
    ("words", "昨天下午"),
    ("month-13", "2021-13-01 10:00:00"),
    ("day-32", "2021年12月32日"),
    ("hour-25", "2021-12-08 25:00"),
    ("offset-of-days", "2021-12-08 10:00 +9999"),
    ("year-too-old", "1989-12-31 23:59:59"),
    ("year-too-new", "2101-01-01"),
    ("epoch-zero", 0),
    ("epoch-negative", -5),
    ("epoch-huge", 10**30),
    ("nan", float("nan")),
    ("infinity", float("inf")),
    ("old-date-object", date(1900, 1, 1)),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in PARSED], ids=[c[0] for c in PARSED])
def test_parse_date_reads_every_spelling(value: object, expected: datetime) -> None:
    parsed = parse_date(value, SHANGHAI)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [c[1] for c in JUNK], ids=[c[0] for c in JUNK])
def test_parse_date_gives_none_for_junk(value: object) -> None:
    assert parse_date(value, SHANGHAI) is None
    assert parse_date(value, SHANGHAI, gmt_is_local=True) is None


GMT_IS_LOCAL = [
    ("gmt-label", "Wed, 04 Aug 2021 17:49:00 GMT", utc(2021, 8, 4, 9, 49)),
    ("plus-zero", "Wed, 04 Aug 2021 17:49:00 +0000", utc(2021, 8, 4, 9, 49)),
    ("z-suffix", "2021-08-04T17:49:00Z", utc(2021, 8, 4, 9, 49)),
    ("utc-word", "2021-08-04 17:49:00 UTC", utc(2021, 8, 4, 9, 49)),
    ("aware-utc-datetime", datetime(2021, 8, 4, 17, 49, tzinfo=UTC), utc(2021, 8, 4, 9, 49)),
    ("other-offset-untouched", "Wed, 04 Aug 2021 17:49:00 +0800", utc(2021, 8, 4, 9, 49)),
    ("other-offset-untouched-2", "2021-08-04T17:49:00-04:00", utc(2021, 8, 4, 21, 49)),
    ("zoneless-untouched", "2021-08-04 17:49:00", utc(2021, 8, 4, 9, 49)),
    ("epoch-has-no-label", 1628099340, utc(2021, 8, 4, 17, 49)),
]


@pytest.mark.parametrize(
    ("value", "expected"), [c[1:] for c in GMT_IS_LOCAL], ids=[c[0] for c in GMT_IS_LOCAL]
)
def test_gmt_is_local_reinterprets_only_utc_labels(value: object, expected: datetime) -> None:
    assert parse_date(value, SHANGHAI, gmt_is_local=True) == expected


def test_gmt_label_is_real_utc_by_default() -> None:
    labelled = "Wed, 04 Aug 2021 17:49:00 GMT"
    assert parse_date(labelled, SHANGHAI) == utc(2021, 8, 4, 17, 49)
    assert parse_date(labelled, SHANGHAI, gmt_is_local=True) == utc(2021, 8, 4, 9, 49)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-07-04 12:00:00", utc(2021, 7, 4, 16)),  # daylight saving time: UTC-4
        ("2021-12-04 12:00:00", utc(2021, 12, 4, 17)),  # standard time: UTC-5
        (date(2021, 7, 4), utc(2021, 7, 4, 4)),
    ],
    ids=["summer", "winter", "date"],
)
def test_zoneless_values_follow_the_given_zone(value: object, expected: datetime) -> None:
    assert parse_date(value, NEW_YORK) == expected


def test_a_zone_word_is_local_only_when_it_names_the_configured_zone() -> None:
    # "CST" is China Standard Time for a Beijing archive, US Central time for a Chicago one,
    # and RFC 2822's US Central (UTC-6) for anyone else
    cst = "Wed, 08 Dec 2021 10:48:44 CST"
    assert parse_date(cst, ZoneInfo("America/Chicago")) == utc(2021, 12, 8, 16, 48, 44)
    assert parse_date(cst, NEW_YORK) == utc(2021, 12, 8, 16, 48, 44)
    assert parse_date("Wed, 08 Dec 2021 10:48:44 EST", SHANGHAI) == utc(2021, 12, 8, 15, 48, 44)


FILE_NAMES = [
    ("jekyll-post", "2021-12-08-202112082206761079.md", utc(2021, 12, 7, 16)),
    ("with-folder", "_posts/2022-05-26-202205262391921712.md", utc(2022, 5, 25, 16)),
    ("windows-folder", "old_post\\2021-12-08-init.md", utc(2021, 12, 7, 16)),
    ("lost-date", "-202205262391921712.md", None),
    ("no-slug", "2021-12-08.md", None),
    ("hexo-title", "北向资金净流入超40亿.md", None),
    ("impossible-day", "2021-02-30-slug.md", None),
    ("year-out-of-range", "1970-01-01-slug.md", None),
    ("empty", "", None),
]


@pytest.mark.parametrize(
    ("filename", "expected"), [c[1:] for c in FILE_NAMES], ids=[c[0] for c in FILE_NAMES]
)
def test_date_from_filename(filename: str, expected: datetime | None) -> None:
    assert date_from_filename(filename, SHANGHAI) == expected
