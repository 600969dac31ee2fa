"""`report --bulk` against owners written out in a dict: resuming after an interruption, owners that are down
or rate-limit, odd batch answers and odd CSV records. No network: the submitter below answers for the owners."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from chalicelib.client.bulk import BulkError, BulkImport, BulkIncomplete, seconds
from chalicelib.client.resolver import Failure, Resolution, ResolutionError
from chalicelib.client.submitter import DeliveryError
from chalicelib.protocol.keys import KeyPair
from tests.conftest import NOW

A, B = "https://a.example", "https://b.example"
ROOT = "https://root.example"
RATE_LIMITED = (429, {"error": {"code": "rate_limited", "message": "too many reports"}, "retry_after": 60})


class Owners:
    """Stands for the submitter and its resolver: `owner` maps address → endpoint; `answers[endpoint]` are the
    (status, answer) of each batch's items in turn, the last one repeated; `received` lists the addresses
    each endpoint took. An endpoint in `down` answers neither lookups (with `lookups`) nor batches; one in
    `budget` takes that many more reports and then answers 429, as a node's per-key rate limit does."""

    def __init__(self, owner: dict[str, str]):
        self.owner = owner
        self.resolver = self
        self.root_url = ROOT
        self.received: dict[str, list[str]] = {A: [], B: []}
        self.answers: dict[str, list[tuple[int, dict]]] = {}
        self.down: set[str] = set()
        self.lookups = False
        self.budget: dict[str, int] = {}

    def resolve(self, ip: str) -> Resolution:
        hops = [ROOT, self.owner[ip]]
        for depth, node in enumerate(hops, 1):
            if self.lookups and node in self.down:
                raise ResolutionError(Failure.UNREACHABLE, f"{node}/v1/refer/{ip} did not answer: ConnectError",
                                      hops[:depth])
        return Resolution(ip, "authoritative", tuple(hops), self.owner[ip], "8.8.0.0/16")

    def deliver_batch(self, endpoint: str, envelopes: list[dict]) -> list[dict]:
        if endpoint in self.down:
            raise DeliveryError("unreachable", f"{endpoint}/v1/reports/batch did not answer: ConnectError")
        queue = self.answers.setdefault(endpoint, [(202, {"status": "received"})])
        status, answer = queue.pop(0) if len(queue) > 1 else queue[0]   # the last answer stays
        return [self._item(endpoint, envelope["report"]["source_identifier"], status, answer)
                for envelope in envelopes]

    def _item(self, endpoint: str, ip: str, status: int, answer: dict) -> dict:
        if status == 202 and endpoint in self.budget:
            if not self.budget[endpoint]:
                status, answer = RATE_LIMITED
            else:
                self.budget[endpoint] -= 1
        if status == 202:
            self.received[endpoint].append(ip)
        return {"status": status, "answer": answer}


def row(ip: str, comment: str = "") -> tuple[str, str, str, str]:
    return ip, "18", NOW.isoformat(), comment


THREE_ROWS = tuple(map(row, ("8.8.8.1", "9.9.9.1", "8.8.8.2")))


def import_csv(tmp_path: Path, owners: Owners, rows=THREE_ROWS, **options) -> tuple[BulkImport, Path, Path]:
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("IP", "Categories", "ReportDate", "Comment"))
        writer.writerows(rows)
    importer = BulkImport(owners, KeyPair.generate(), {}, **{"batch_size": 1, "sleep": lambda _: None, **options})
    return importer, source, tmp_path / "in.state.json"


def unsent(state_file: Path) -> list[dict[str, str]]:
    with state_file.with_name("in.unsent.csv").open(newline="") as listed:
        return list(csv.DictReader(listed))


def unsent_lines(state_file: Path) -> list[str]:
    return [row["IP"] for row in unsent(state_file)]


def saved(state_file: Path) -> dict:
    return json.loads(state_file.read_text())


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


@pytest.mark.parametrize("lookups", [False, True], ids=["delivery", "lookup"])
def test_rows_of_an_unreachable_owner_are_left_for_a_rerun_while_the_other_owners_get_theirs(tmp_path, lookups):
    """A, owner of the first line, is down (its node does not answer the lookup, or only the delivery); B
    still gets its lines, the run says what is left and why, and the rerun sends only A's line."""
    owners = Owners({"9.9.9.1": A, "8.8.8.1": B, "8.8.8.2": B})
    owners.down, owners.lookups = {A}, lookups
    waits: list[float] = []
    importer, source, state = import_csv(tmp_path, owners, tuple(map(row, ("9.9.9.1", "8.8.8.1", "9.9.9.2",
                                                                           "8.8.8.2"))), sleep=waits.append)
    owners.owner["9.9.9.2"] = A
    with pytest.raises(BulkIncomplete) as stopped:
        importer.run(source, state)
    assert owners.received == {A: [], B: ["8.8.8.1", "8.8.8.2"]}
    assert waits == ([] if lookups else [2, 4, 8])     # retried once, not again for its second line
    summary = stopped.value.summary.to_json()
    assert (summary["delivered"], summary["left"]) == (2, 2) and len(summary["left_reasons"]) == 1
    assert str(stopped.value).startswith("2 of 4 lines left for a rerun (run the same command again")
    assert f"2 because {A}" in str(stopped.value) and "\n" not in str(stopped.value)
    assert saved(state)["left_lines"] == [2, 4] and not saved(state)["finished"]

    owners.down = set()
    summary = importer.run(source, state).to_json()
    assert (summary["delivered"], summary["duplicate"], summary["left"]) == (4, 0, 0)
    assert owners.received == {A: ["9.9.9.1", "9.9.9.2"], B: ["8.8.8.1", "8.8.8.2"]}
    assert saved(state)["finished"] and unsent_lines(state) == []


def test_an_unreachable_root_stops_the_import_as_no_owner_can_be_found(tmp_path):
    owners = Owners({"8.8.8.1": B, "9.9.9.1": A, "8.8.8.2": B})
    owners.down, owners.lookups = {ROOT, A}, True
    importer, source, state = import_csv(tmp_path, owners)
    with pytest.raises(BulkError, match=f"could not reach the root {ROOT}") as stopped:
        importer.run(source, state)
    assert not isinstance(stopped.value, BulkIncomplete)
    assert owners.received == {A: [], B: []} and saved(state)["handled_through"] == 0


def test_rows_an_owner_took_before_rate_limiting_the_rest_stay_handled(tmp_path):
    """B takes 6 of a batch of 10 and asks to wait a minute, past --max-wait: those 6 are handled at once,
    so the rerun sends only the other 4 and counts all 10 as delivered, none as duplicate."""
    ips = [f"8.8.8.{n}" for n in range(1, 11)]
    owners = Owners(dict.fromkeys(ips, B))
    owners.budget[B] = 6
    importer, source, state = import_csv(tmp_path, owners, tuple(map(row, ips)), batch_size=10, max_wait=10)
    with pytest.raises(BulkIncomplete) as stopped:
        importer.run(source, state)
    assert "gave up after waiting 0 s" not in str(stopped.value)
    assert f"{B} rate-limits this reporter key, and waiting 60 s more would pass --max-wait 10" in str(stopped.value)
    assert saved(state)["counts"] == {"delivered": 6} and saved(state)["left_lines"] == [8, 9, 10, 11]
    assert stopped.value.summary.to_json()["left"] == 4

    owners.budget[B] = 4
    importer.max_wait = 300
    summary = importer.run(source, state).to_json()
    assert (summary["delivered"], summary["duplicate"], summary["left"]) == (10, 0, 0)
    assert sorted(owners.received[B]) == sorted(ips)


def crashed_after_two_answers(tmp_path: Path) -> tuple[Owners, BulkImport, Path, Path]:
    """A batch of 4 of which the owner took 2 before rate-limiting the rest; the process dies while it waits.
    The importer and owner are ready for the rerun."""
    ips = [f"8.8.8.{n}" for n in range(1, 5)]
    owners = Owners(dict.fromkeys(ips, B))
    owners.budget[B] = 2
    importer, source, state = import_csv(tmp_path, owners, tuple(map(row, ips)), batch_size=4)

    def crash(_):
        raise KeyboardInterrupt
    importer.sleep = crash
    with pytest.raises(KeyboardInterrupt):
        importer.run(source, state)
    owners.budget[B] = 2
    importer.sleep = lambda _: None
    return owners, importer, source, state


def test_a_batch_cut_short_by_a_crash_after_some_answers_resumes_past_them(tmp_path):
    """The rows of a part the owner answered are saved before anything else happens to the batch."""
    _, importer, source, state = crashed_after_two_answers(tmp_path)
    assert saved(state)["handled_lines"] == [2, 3]
    summary = importer.run(source, state).to_json()
    assert (summary["delivered"], summary["duplicate"]) == (4, 0)


def test_an_import_interrupted_before_the_upgrade_resumes_from_its_version_2_state(tmp_path):
    """A version-2 state is version 3 with no lines left for a rerun: those runs stopped instead."""
    _, importer, source, state = crashed_after_two_answers(tmp_path)
    old = saved(state)
    del old["left_lines"]
    state.write_text(json.dumps({**old, "version": 2}))
    summary = importer.run(source, state).to_json()
    assert (summary["delivered"], summary["duplicate"]) == (4, 0)


@pytest.mark.parametrize("inside", ["", "\n8.8.8.3,14,2026-11-20T10:00:00Z,pasted log line\n"])
def test_a_field_over_the_csv_size_limit_stops_the_import_at_its_line_and_nothing_inside_it_is_sent(tmp_path,
                                                                                                     inside):
    """Reading on at the next line would take the rest of the quoted field for records: a pasted log line naming
    8.8.8.3 would accuse an address the file never listed."""
    owners = Owners({"8.8.8.1": B, "8.8.8.2": B, "8.8.8.3": B})
    importer, source, state = import_csv(tmp_path, owners, (row("8.8.8.1"), row("9.9.9.1", "x" * 200_000 + inside),
                                                            row("8.8.8.2")))
    with pytest.raises(BulkError, match="^line 3 is not a readable CSV record"):
        importer.run(source, state)
    assert "8.8.8.3" not in owners.received.get(B, [])


def test_a_comment_longer_than_a_report_may_carry_is_refused_before_sending(tmp_path):
    owners = Owners({"8.8.8.1": B, "8.8.8.2": B})
    importer, source, state = import_csv(tmp_path, owners, (row("8.8.8.1", "x" * 4096), row("8.8.8.2", "x" * 4097)))
    summary = importer.run(source, state).to_json()
    assert (summary["delivered"], summary["rejected"]) == (1, 1)
    assert summary["reasons"] == {"rejected": {"comment_too_long": 1}}
    assert owners.received[B] == ["8.8.8.1"]
    [listed] = unsent(state)
    assert listed["IP"] == "8.8.8.2" and "Comment has 4,097 characters" in listed["Reason"]


def test_lines_handled_before_a_crash_stay_handled_when_left_lines_shift_the_chunks_of_the_rerun(tmp_path):
    """Run 1 leaves line 2 (A fails) and is killed in its second chunk, [5, 6, 7], once B took 5 and 7.
    The rerun's chunks are [2, 5, 6] and [7]: line 7 must still count as handled in the second."""
    owners = Owners({"9.9.9.1": A, "8.8.8.1": B, "8.8.8.2": B, "8.8.8.3": B, "9.9.9.2": A, "8.8.8.4": B})
    owners.answers[A] = [(503, {"error": {"code": "unavailable"}})]
    importer, source, state = import_csv(tmp_path, owners, tuple(map(row, owners.owner)), chunk_size=3)

    def crash_once_four_are_handled(done, total, phase):
        if done == 4:
            raise KeyboardInterrupt
    importer.on_progress = crash_once_four_are_handled
    with pytest.raises(KeyboardInterrupt):
        importer.run(source, state)
    assert (saved(state)["left_lines"], saved(state)["handled_lines"]) == ([2], [5, 7])

    owners.answers[A] = [(202, {"status": "received"})]
    importer.on_progress = lambda done, total, phase: None
    summary = importer.run(source, state).to_json()
    assert (summary["delivered"], summary["duplicate"]) == (6, 0)
    assert sorted(owners.received[B]) == ["8.8.8.1", "8.8.8.2", "8.8.8.3", "8.8.8.4"]
