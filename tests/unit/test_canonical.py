"""The fast canonicaliser is byte-equal to the rfc8785 reference on report-shaped and arbitrary JSON."""
from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.protocol.canonical import canonical_json

scalars = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=30)

reports = st.fixed_dictionaries({
    "xarf_version": st.just("4.0.0"), "report_id": st.uuids().map(str),
    "timestamp": st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    "reporter": st.fixed_dictionaries({"org": st.text(), "contact": st.emails(), "domain": st.text()}),
    "source_identifier": st.ip_addresses().map(str), "source_port": st.integers(0, 65535),
    "category": st.text(max_size=12), "type": st.text(max_size=12),
    "evidence": st.lists(st.fixed_dictionaries({"content_type": st.text(), "payload": st.binary().map(bytes.hex),
                                                 "hash": st.text(), "description": st.text()}), max_size=3),
    "confidence": st.floats(0, 1), "tags": st.lists(st.text(), max_size=4),
})


@settings(max_examples=400)
@given(reports)
def test_fast_canonical_form_equals_rfc8785_on_reports(report):
    assert canonical_json(report) == rfc8785.dumps(report)


@settings(max_examples=400)
@given(json_values)
def test_fast_canonical_form_equals_rfc8785_on_any_json(value):
    assert canonical_json(value) == rfc8785.dumps(value)


def test_keys_sort_by_utf16_code_units_not_code_points():
    value = {"\U0001f600": 1, "\ufb01": 2}
    assert canonical_json(value) == rfc8785.dumps(value)


def test_integral_and_tiny_floats_take_the_reference_path():
    for value in (1.0, 1e21, 1e-7, -0.0, 5e-324):
        assert canonical_json([value]) == rfc8785.dumps([value])


def test_a_lone_surrogate_is_refused_as_the_reference_refuses_it():
    """orjson refuses it too; the fallback makes the refusal the reference's, so intake answers the same."""
    for value in ("\ud800", {"note": "a\udc00"}):
        with pytest.raises(rfc8785.CanonicalizationError):
            rfc8785.dumps(value)
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json(value)


def test_nesting_deeper_than_orjson_accepts_takes_the_reference_path():
    value: list = []
    for _ in range(300):
        value = [value]
    assert canonical_json(value) == rfc8785.dumps(value)
