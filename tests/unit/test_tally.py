"""Scores: rank weights, reputation, whole-hour decay, local rank overrides."""
from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.core.ports import Case, Contribution
from chalicelib.core.tally import TallyRules
from tests.conftest import NOW


def contribution(rank="anonymous", age=timedelta(0), reputation=1.0, override=None):
    return Contribution("ed25519:k", rank, NOW - age, NOW - age, 1, reputation, override)


def case(*contributions):
    return Case("127.0.0.1", "spam", "received", NOW, NOW, len(contributions), contributions)


def test_a_fresh_report_weighs_exactly_its_rank():
    assert TallyRules().score(case(contribution()), NOW + timedelta(minutes=59)) == 1.0


def test_weight_halves_every_half_life():
    rules = TallyRules(half_life_hours=24)
    assert rules.score(case(contribution(age=timedelta(hours=24))), NOW) == 0.5
    assert rules.score(case(contribution(age=timedelta(hours=48))), NOW) == 0.25


def test_ranks_and_reputation_multiply():
    rules = TallyRules()
    assert rules.score(case(contribution("noc"), contribution("trusted", reputation=0.5)), NOW) == 10 + 1.5


@pytest.mark.parametrize("override,expected", [("muted", 0.0), ("noc", 10.0), (None, 1.0)])
def test_an_operators_rank_override_wins(override, expected):
    assert TallyRules().score(case(contribution(override=override)), NOW) == expected
