"""docs/settings.md names every variable the node reads, so an operator finds each setting there."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

from chalicelib.settings import ENV_PREFIX, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_variable_the_node_reads_is_documented():
    source = inspect.getsource(Settings.from_env)
    names = {name if name.startswith("POWERTOOLS_") else ENV_PREFIX + name
             for name in re.findall(r'\("([A-Z][A-Z_]+)"', source)}
    assert len(names) > 25   # the pattern still finds the variables
    documented = set(re.findall(r"`([A-Z][A-Z_]+)`", DOCS.read_text()))
    assert names - documented == set()
