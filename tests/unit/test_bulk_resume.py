"""`report --bulk` against owners written out in a dict: resuming after an interruption, and odd batch answers.
No network: the submitter below answers for the owners."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from chalicelib.client.bulk import BulkError, BulkImport, seconds
from chalicelib.client.resolver import Resolution
from chalicelib.protocol.keys import KeyPair
from tests.conftest import NOW

A, B = "https://a.example", "https://b.example"


class Owners:
    """Stands for the submitter and its resolver: `owner` maps address → endpoint; `answers[endpoint]` are the
    (status, answer) of each batch's items in turn, the last one repeated; `received` lists the addresses
    each endpoint took."""

    def __init__(self, owner: dict[str, str]):
        self.owner = owner
        self.resolver = self
        self.received: dict[str, list[str]] = {A: [], B: []}
        self.answers: dict[str, list[tuple[int, dict]]] = {}

    def resolve(self, ip: str) -> Resolution:
        return Resolution(ip, "authoritative", (), self.owner[ip], "8.8.0.0/16")

    def deliver_batch(self, endpoint: str, envelopes: list[dict]) -> list[dict]:
        queue = self.answers.setdefault(endpoint, [(202, {"status": "received"})])
        status, answer = queue.pop(0) if len(queue) > 1 else queue[0]   # the last answer stays
        if status == 202:
            self.received[endpoint] += [envelope["report"]["source_identifier"] for envelope in envelopes]
        return [{"index": i, "status": status, "answer": answer} for i in range(len(envelopes))]


def import_csv(tmp_path: Path, owners: Owners) -> tuple[BulkImport, Path, Path]:
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("IP", "Categories", "ReportDate", "Comment"))
        writer.writerows((ip, "18", NOW.isoformat(), "") for ip in ("8.8.8.1", "9.9.9.1", "8.8.8.2"))
    importer = BulkImport(owners, KeyPair.generate(), {}, batch_size=1, sleep=lambda _: None)
    return importer, source, tmp_path / "in.state.json"


def unsent_lines(state_file: Path) -> list[str]:
    with state_file.with_name("in.unsent.csv").open(newline="") as unsent:
        return [row["IP"] for row in csv.DictReader(unsent)]


def interrupted_import(tmp_path: Path) -> tuple[Owners, BulkImport, Path, Path]:
    """B takes lines 2 and 4; A, the owner of line 3, is unavailable, which stops the first run."""
    owners = Owners({"8.8.8.1": B, "9.9.9.1": A, "8.8.8.2": B})
    owners.answers[A] = [(503, {"error": {"code": "unavailable"}})]
    importer, source, state = import_csv(tmp_path, owners)
    with pytest.raises(BulkError):
        importer.run(source, state)
    return owners, importer, source, state


def test_a_row_whose_owner_changed_before_the_resume_is_still_delivered(tmp_path):
    """Before the rerun, line 3's space moves to the owner that already took lines 2 and 4."""
    owners, importer, source, state = interrupted_import(tmp_path)
    owners.owner["9.9.9.1"] = B
    summary = importer.run(source, state)
    assert summary.to_json()["delivered"] == 3 and summary.total == 3
    assert sorted(owners.received[B]) == ["8.8.8.1", "8.8.8.2", "9.9.9.1"] and owners.received[A] == []
    assert unsent_lines(state) == []


def test_a_row_delivered_before_the_interruption_is_not_sent_again_to_its_new_owner(tmp_path):
    owners, importer, source, state = interrupted_import(tmp_path)
    owners.owner.update({"8.8.8.1": A, "8.8.8.2": A})   # B's space moved to A, which is back
    owners.answers[A] = [(202, {"status": "received"})]
    summary = importer.run(source, state)
    assert summary.to_json()["delivered"] == 3
    assert owners.received == {A: ["9.9.9.1"], B: ["8.8.8.1", "8.8.8.2"]}


def test_a_malformed_retry_after_in_a_batch_answer_waits_the_default_back_off(tmp_path):
    owners = Owners({"8.8.8.1": B, "9.9.9.1": B, "8.8.8.2": B})
    owners.answers[B] = [(429, {"retry_after": "soon"}), (202, {"status": "received"})]
    waits: list[float] = []
    importer, source, state = import_csv(tmp_path, owners)
    importer.sleep = waits.append
    summary = importer.run(source, state)
    assert summary.to_json()["delivered"] == 3 and waits == [2]


@pytest.mark.parametrize("value,expected", [(30, 30), (0, 0), ("soon", None), (-5, None), (1.5, None),
                                            (True, None), (None, None), ([1], None)])
def test_retry_after_of_a_batch_item_is_whole_seconds_or_nothing(value, expected):
    assert seconds(value) == expected
