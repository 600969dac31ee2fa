"""The evidence a check keeps: bounded, readable, and serialisable as the case store needs it."""
from __future__ import annotations

import json

from chalicelib.checks import CheckResult, Verdict
from chalicelib.checks.result import LINE_LIMIT, TRANSCRIPT_LIMIT, TRUNCATED, render


def test_transcript_is_cut_to_its_budget_with_a_marker():
    """A chatty target cannot make a result, or the case that stores it, grow without bound."""
    result = CheckResult("port-scan", "127.0.0.1", Verdict.REFUTED, "", ("x" * 5000,) * 100)
    assert all(len(line) <= LINE_LIMIT for line in result.transcript)
    assert sum(len(line) + 1 for line in result.transcript) <= TRANSCRIPT_LIMIT
    assert result.transcript[-1] == TRUNCATED


def test_binary_bytes_are_kept_as_hex_and_text_line_by_line():
    assert render(b"\x05\x01\x00") == ["05 01 00"]
    assert render(b"250-hello\r\n250 OK\r\n") == ["250-hello", "250 OK"]


def test_result_serialises_to_plain_json():
    result = CheckResult("open-relay", "127.0.0.1", Verdict.CONFIRMED, "accepted", ["a"], {"rcpt_reply": "250 OK"})
    assert json.loads(json.dumps(result.to_json())) == {
        "check": "open-relay", "target": "127.0.0.1", "verdict": "confirmed", "summary": "accepted",
        "transcript": ["a"], "details": {"rcpt_reply": "250 OK"}}
