"""Reports, cases, reporter standing and rate windows in DynamoDB (item types: docs/aws.md).

DynamoDB here has no transactions, so "store each new report and count it, all or nothing" becomes
"store it first, then count it with writes that are each idempotent, then mark it counted":

1. the report item, on condition that its report_id is new. This decides NEW against DUPLICATE or
   CONFLICT (same id, other digest) once and for all, and comes before any side effect, so a crash
   never loses an acknowledged report and a conflicting replay changes nothing;
2. the case: created, or moved to this report's time, on condition that it is older (reopening a
   resolved case); a report no newer than the case changes nothing, so a replay is a no-op;
3. the reporter's contribution: rank and counted_at restart, on condition that the last counted
   report is a window old, and observed with them unless the stored observation is newer (a second
   conditional write when the first failed); a replay finds its own counted_at and changes nothing;
4. the contribution's count, on condition that the report's id is not in the contribution's
   `counting` set, which the same write adds it to: ADD once, however often it is replayed;
5. the case's list of reports (a put of the same key);
6. `counted` on the report item; and only then 7. the id leaves the contribution's `counting` set,
   so no retry can find the guard gone while the report still looks uncounted.

A retry of a report whose first attempt was cut short finds it stored without `counted`: that is a
DUPLICATE to the caller, and the retry runs steps 2-7 again, which converge on the state one attempt
would have left. Only a re-send that arrives while the first attempt still runs, and reaches step 4
after that attempt's step 7, can count the report twice: the count is shown to operators, never
scored. A case's `reports` is the sum of its contributions' counts, so the case keeps no counter.

Cases and their contributions share the partition `CASES` (sk `<ip>#<category>#` and
`<ip>#<category>#<reporter>`), so one Query reads a case, an address's cases, or all of them. A case
is resolved while it has `resolved_at`; its `status` then holds `received`, what a newer report
reopens it to, so step 2 reopens by removing `resolved_at` in the same conditional write.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from ..core.ports import Allowance, Case, Contribution, Outcome, ReportRecord
from .dynamodb_table import DynamoDBTable, Key, epoch, moment

CASES = "CASES"
WRITERS = 10   # cases written at once: botocore keeps 10 connections per client
# Cases sort by address, not by time, so finding the newest means reading the partition: at most this many
# items (some MB, a few seconds of an API call). A GSI on (pk, last_seen) would bound the read by `limit`.
CASE_LIST_MAX_ITEMS = 20_000

log = logging.getLogger("netimmune.cases")


def case_key(ip: str, category: str) -> Key:
    return CASES, f"{ip}#{category}#"


def contribution_key(ip: str, category: str, reporter: str) -> Key:
    return CASES, f"{ip}#{category}#{reporter}"


def reporter_key(reporter: str) -> Key:
    return f"REPORTER#{reporter}", "REPORTER"


def report_key(report_id: str) -> Key:
    return f"REPORT#{report_id}", "REPORT"


def case_report_key(ip: str, category: str, received: float, report_id: str) -> Key:
    return f"CASE#{ip}#{category}", f"{round(received * 1_000_000):020d}#{report_id}"


def case_status(item: dict) -> str:
    return "resolved" if "resolved_at" in item else item["status"]


class DynamoDBReportStore:
    def __init__(self, client, table_name: str):
        self.table = DynamoDBTable(client, table_name)

    # -- intake ----------------------------------------------------------------------------------
    def record_reports(self, records: Sequence[ReportRecord], count_window_seconds: int) -> list[tuple[Outcome, str]]:
        """The reports of one case in their order, WRITERS cases at once: a batch of 1,000 is some 7,000 requests,
        which one after another would outlast API Gateway's 29 s, and cases share no item. A report_id repeated
        in the batch is written after all the others, so it is a DUPLICATE or a CONFLICT of its first, as in one
        SQLite transaction."""
        by_case: dict[tuple[str, str], list[int]] = {}
        repeats, seen = [], set()
        for index, record in enumerate(records):
            if record.report_id in seen:
                repeats.append(index)
            else:
                seen.add(record.report_id)
                by_case.setdefault((record.ip, record.category), []).append(index)
        results: list[tuple[Outcome, str]] = [None] * len(records)  # type: ignore[list-item]

        def write(indices: list[int]) -> None:
            for index in indices:
                results[index] = self._record(records[index], count_window_seconds)

        with ThreadPoolExecutor(max_workers=max(1, min(WRITERS, len(by_case)))) as pool:
            list(pool.map(write, by_case.values()))   # list(): a write that failed raises here
        write(repeats)
        return results

    def _record(self, r: ReportRecord, window: int) -> tuple[Outcome, str]:
        pk, sk = report_key(r.report_id)
        item = {"pk": pk, "sk": sk, "report_id": r.report_id, "digest": r.digest, "ip": r.ip,
                "category": r.category, "reporter": r.reporter, "rank": r.rank, "observed": epoch(r.observed),
                "received": epoch(r.received), "envelope": r.envelope_json, "answer": r.answer_json}
        if self.table.put(item, "attribute_not_exists(#pk)"):
            self._count(r, window)
            return Outcome.NEW, r.answer_json
        stored = self.table.get(pk, sk)
        if stored["digest"] != r.digest:
            return Outcome.CONFLICT, stored["answer"]
        if not stored.get("counted"):
            # finish what an attempt cut short began: that attempt was never answered, so for the reporter and
            # for intake (which queues the case's policy run for new reports) this one is the report's arrival
            self._count(_report(stored), window)
            return Outcome.NEW, stored["answer"]
        return Outcome.DUPLICATE, stored["answer"]

    def _count(self, r: ReportRecord, window: int) -> None:
        received = epoch(r.received)
        self.table.update(
            *case_key(r.ip, r.category),
            "SET #ip = :ip, #category = :category, #first_seen = if_not_exists(#first_seen, :at), "
            "#status = if_not_exists(#status, :received), #last_seen = :at REMOVE #resolved_at",
            "attribute_not_exists(#last_seen) OR #last_seen < :at",
            {"ip": r.ip, "category": r.category, "at": received, "received": "received"})
        contribution = contribution_key(r.ip, r.category, r.reporter)
        restart = "(attribute_not_exists(#counted_at) OR #counted_at <= :window_start)"
        values = {"reporter": r.reporter, "rank": r.rank, "at": received, "window_start": received - window}
        if self.table.update(*contribution,
                             "SET #reporter = :reporter, #rank = :rank, #observed = :observed, #counted_at = :at",
                             f"{restart} AND (attribute_not_exists(#observed) OR #observed <= :observed)",
                             {**values, "observed": epoch(r.observed)}) is None:
            # not a restart, or one by a report of an older observation, which keeps the newer one
            self.table.update(*contribution, "SET #reporter = :reporter, #rank = :rank, #counted_at = :at", restart,
                              values)
        ids = {"id": r.report_id, "ids": {r.report_id}}
        self.table.update(*contribution, "ADD #reports :one, #counting :ids", "NOT contains(#counting, :id)",
                          {**ids, "one": 1})
        pk, sk = case_report_key(r.ip, r.category, received, r.report_id)
        self.table.put({"pk": pk, "sk": sk, "report_id": r.report_id})
        self.table.update(*report_key(r.report_id), "SET #counted = :yes", values={"yes": True})
        self.table.update(*contribution, "DELETE #counting :ids", values={"ids": ids["ids"]})

    # -- reads -----------------------------------------------------------------------------------
    def get_report(self, report_id: str) -> ReportRecord | None:
        item = self.table.get(*report_key(report_id))
        return _report(item) if item else None

    def case_reports(self, ip: str, category: str) -> list[ReportRecord]:
        order = [item["report_id"] for item in self.table.query(f"CASE#{ip}#{category}")]
        found = {item["report_id"]: item for item in self.table.batch_get(report_key(i) for i in order)}
        return [_report(found[report_id]) for report_id in order if report_id in found]

    def get_case(self, ip: str, category: str) -> Case | None:
        cases = self._cases(f"{ip}#{category}#", None, 1)
        return cases[0] if cases else None

    def list_cases(self, ip: str | None = None, status: str | None = None, limit: int = 500) -> list[Case]:
        return self._cases(f"{ip}#" if ip is not None else None, status, limit)

    def _cases(self, sk_prefix: str | None, status: str | None, limit: int) -> list[Case]:
        """Cases under sk_prefix in the CASES partition, newest first, with their contributions.

        One address's cases are read whole, however many reporters they have. All cases are read in address
        order, CASE_LIST_MAX_ITEMS items at most: when there may be more, they are the newest of the cases read,
        less the last one read (whose contributions may go on past the cut)."""
        cases: dict[tuple[str, str], dict] = {}
        contributions: dict[tuple[str, str], list[dict]] = {}
        cap = None if sk_prefix is not None else CASE_LIST_MAX_ITEMS
        items = self.table.query(CASES, sk_prefix, limit=cap)
        for item in items:
            ip, category, reporter = item["sk"].split("#", 2)
            if not reporter:
                cases[ip, category] = item
            elif "reports" in item:  # a contribution whose first report is still being counted has none
                contributions.setdefault((ip, category), []).append(item)
        if len(items) == cap:
            log.warning("cases listed from the first %d items of the %s partition only", len(items), CASES)
            cases.pop(tuple(items[-1]["sk"].split("#", 2)[:2]), None)
        chosen = sorted((key for key, item in cases.items() if status is None or case_status(item) == status),
                        key=lambda key: cases[key]["last_seen"], reverse=True)[:limit]
        reporters = {c["reporter"] for key in chosen for c in contributions.get(key, ())}
        standing = {item["pk"].removeprefix("REPORTER#"): item
                    for item in self.table.batch_get(reporter_key(r) for r in reporters)}
        return [self._case(cases[key], contributions.get(key, []), standing) for key in chosen]

    @staticmethod
    def _case(item: dict, contributions: list[dict], standing: dict[str, dict]) -> Case:
        counted = tuple(
            Contribution(c["reporter"], c["rank"], moment(c["observed"]), moment(c["counted_at"]), c["reports"],
                         float(standing.get(c["reporter"], {}).get("reputation", 1.0)),
                         standing.get(c["reporter"], {}).get("rank_override"))
            for c in contributions)
        verification = item.get("verification")
        return Case(item["ip"], item["category"], case_status(item), moment(item["first_seen"]),
                    moment(item["last_seen"]), sum(c.reports for c in counted), counted,
                    json.loads(verification) if verification else None, item.get("awaiting"),
                    moment(item["awaiting_since"]) if "awaiting_since" in item else None)

    # -- operators -------------------------------------------------------------------------------
    def set_case_status(self, ip: str, category: str, status: str, verification: dict | None = None) -> bool:
        values: dict = {}
        if status == "resolved":
            expression = "SET #resolved_at = #last_seen, #status = :received"
            values["received"] = "received"
        else:
            expression = "SET #status = :status"
            values["status"] = status
        if verification is not None:
            expression += ", #verification = :verification"
            values["verification"] = json.dumps(verification)
        # a case resolved ends its episode: the next one may fire its threshold actions again
        expression += " REMOVE #resolved_at" if status != "resolved" else " REMOVE #threshold_fired"
        return self.table.update(*case_key(ip, category), expression, "attribute_exists(#status)", values) is not None

    def await_verification(self, ip: str, category: str, verification_id: str, now: datetime) -> bool:
        return self.table.update(*case_key(ip, category),
                                 "SET #status = :verifying, #awaiting = :id, #awaiting_since = :at",
                                 "attribute_exists(#status) AND attribute_not_exists(#resolved_at)",
                                 {"verifying": "verifying", "id": verification_id, "at": epoch(now)}) is not None

    def set_rank_override(self, reporter: str, rank: str | None) -> None:
        if rank is None:
            self.table.update(*reporter_key(reporter), "REMOVE #rank_override")
        else:
            self.table.update(*reporter_key(reporter), "SET #rank_override = :rank", values={"rank": rank})

    def take(self, counts: Mapping[str, int], limit: int, window_seconds: int, now: datetime) -> dict[str, Allowance]:
        """One item per bucket and window, so a window's count starts at zero without a reset. Each bucket is
        counted up by all it asked for, atomically, then given back what did not fit: between the two updates a
        concurrent request may see the window fuller than it is, never emptier."""
        start = int(now.timestamp()) // window_seconds * window_seconds
        wait = max(1, int(start + window_seconds - now.timestamp()) + 1)
        answers: dict[str, Allowance] = {}
        for bucket, count in counts.items():
            key = (f"RATE#{bucket}", str(start))
            used = int(self.table.update(*key, "ADD #count :count SET #expires_at = :end",
                                         values={"count": count, "end": start + window_seconds},
                                         returns="UPDATED_NEW")["count"])
            granted = min(count, max(0, limit - (used - count)))
            if granted < count:
                self.table.update(*key, "ADD #count :count", values={"count": granted - count})
            answers[bucket] = Allowance(granted, None if granted == count else wait)
        return answers


def _report(item: dict) -> ReportRecord:
    return ReportRecord(item["report_id"], item["digest"], item["ip"], item["category"], item["reporter"],
                        item["rank"], moment(item["observed"]), moment(item["received"]), item["envelope"],
                        item["answer"])
