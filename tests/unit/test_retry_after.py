"""Retry-After as RFC 9110 allows it: a number of seconds or an HTTP date."""
from __future__ import annotations

import httpx
import pytest

from chalicelib.client.submitter import retry_after
from tests.conftest import NOW   # 2026-11-26 12:00:00 UTC


@pytest.mark.parametrize("value,seconds", [
    ("120", 120),
    ("Thu, 26 Nov 2026 12:01:30 GMT", 90),
    ("Thu, 26 Nov 2026 12:01:30 -0000", 90),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0),      # a date already past: retry now
    ("soon", None),
    ("1.5", None),
    ("-5", None),
    ("²".encode(), None),                        # a digit to str.isdigit, not to int()
    ("", None),
])
def test_retry_after_is_read_as_seconds_or_as_an_http_date(value, seconds):
    response = httpx.Response(429, headers={"Retry-After": value})
    assert retry_after(response, now=NOW) == seconds


def test_no_retry_after_is_none():
    assert retry_after(httpx.Response(429), now=NOW) is None
