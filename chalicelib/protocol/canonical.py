"""RFC 8785 (JCS) canonical JSON, with a fast path for the objects reports are made of.

`rfc8785.dumps` is the reference and the fallback. For objects whose keys are ASCII, whose integers
fit I-JSON and whose floats format the same in ECMAScript and Python, `json.dumps` with sorted keys
produces the same bytes several times faster; a property test holds the two byte-equal.
"""
from __future__ import annotations

import json
import math
from typing import Any

import rfc8785

_MAX_SAFE = 2**53 - 1
_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                           allow_nan=False, check_circular=False).encode


def _fast_path_holds(value: Any) -> bool:
    """True when json.dumps(sort_keys) is already JCS for this value (plain loops: it runs per report)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            if type(item) is not str and not _fast_path_holds(item):
                return False
        return True
    if kind is list:
        for item in value:
            if type(item) is not str and not _fast_path_holds(item):
                return False
        return True
    if kind is int:
        return -_MAX_SAFE <= value <= _MAX_SAFE
    if kind is float:
        # ES6 and Python repr print the same shortest digits without exponent in [1e-4, 1e16), integral
        # values aside ("1.0" against "1")
        return math.isfinite(value) and 1e-4 <= abs(value) < 1e16 and not value.is_integer()
    return False


def canonical_json(value: Any) -> bytes:
    if _fast_path_holds(value):
        try:
            return _encode(value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let the reference refuse it
            pass
    return rfc8785.dumps(value)
