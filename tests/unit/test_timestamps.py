"""Timestamps on the wire: RFC 3339 in UTC with `Z`, the one form every signed object carries."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.protocol.encoding import EncodingError, format_time, parse_time


@pytest.mark.parametrize("text,expected", [
    ("2026-11-26T12:00:00Z", datetime(2026, 11, 26, 12, tzinfo=timezone.utc)),
    ("2026-11-26T12:00:00.5Z", datetime(2026, 11, 26, 12, 0, 0, 500000, tzinfo=timezone.utc)),
    ("2024-02-29T23:59:59.123456789Z", datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=timezone.utc)),
])
def test_rfc3339_utc_times_are_read(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", [
    "2026-11-26T12Z", "2026-11-26T12:00Z",                 # seconds missing
    "20261126T120000Z", "2026-11-26T1200Z",                # ISO 8601 basic format
    "2026-W48-4T12:00:00Z", "2026-330T12:00:00Z",          # week and ordinal dates
    "2026-11-26T12:00:00,5Z", "2026-11-26T12:00:00.Z",     # comma or empty fraction
    "2026-11-26T12:00:00+00:00", "2026-11-26 12:00:00Z",   # offset instead of Z; space instead of T
    "2026-11-26t12:00:00z", " 2026-11-26T12:00:00Z",
    "2026-02-30T12:00:00Z", "2016-12-31T23:59:60Z",        # no such day; a leap second datetime cannot hold
    "", 1764158400,
])
def test_other_spellings_of_a_time_are_refused(text):
    with pytest.raises(EncodingError):
        parse_time(text)


def test_written_times_read_back_to_the_same_second():
    moment = datetime(2026, 11, 26, 12, 30, 15, tzinfo=timezone.utc)
    assert parse_time(format_time(moment)) == moment
