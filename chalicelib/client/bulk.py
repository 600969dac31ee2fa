"""`report --bulk`: an AbuseIPDB bulk-report CSV, delivered to the owners of its addresses exactly once.

The CSV is the one AbuseIPDB's bulk-report takes (`IP,Categories,ReportDate,Comment`, categories as
AbuseIPDB ids). It is read in chunks: every row's ids map through the category table, every address
is resolved through the referral tree (the resolver caches referrals, so a chunk costs about one
lookup per distinct address), and the rows are grouped by owner and posted in batches.

Exactly once, across interruptions:
- a row's report_id is a UUID derived from the reporter key and the row itself, so a row sent again
  after a crash carries the same id and its owner answers 200 duplicate instead of storing it twice;
- a state file, replaced atomically whenever an owner answers, records the line before which everything is
  handled (but for the lines left for a rerun) and, within the chunk in progress, each line handled. A
  rerun with the same state resumes there and sends only the other lines, even when an address changed
  owner in between.

An owner that cannot take its rows now (its node down or failing, or rate-limiting past --max-wait) does
not hold up the others: its rows are left for a rerun, which sends only them, and the run ends with
BulkIncomplete, naming how many lines are left and why.

No row is dropped silently: those not delivered (unparseable, unowned, unresolvable, refused by their
owner or, like an over-long comment, before sending) go to an "unsent" CSV beside the state with the
reason; the unowned ones are the input for finding an abuse contact another way (the registry's RDAP record).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

from ..protocol.categories import Category, from_abuseipdb_ids
from ..protocol.keys import KeyPair
from ..protocol.prefixes import AddressError, parse_ip
from ..protocol.report import MAX_TEXT, build_report, sign_envelope
from .resolver import Failure, ResolutionError
from .submitter import DeliveryError, Submitter

COLUMNS = ("IP", "Categories", "ReportDate", "Comment")
ROW_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://netimmune.invalid/report/bulk")
STATE_VERSION = 3             # 3: lines left for a rerun, which a reader of 2 would skip
MAX_SINGLE_WAIT = 60          # nodes count rates per minute: no wait needs to be longer
UNREACHABLE_RETRIES = 3
RESUME = "run the same command again to resume"
DELIVERED, DUPLICATE, REJECTED, UNOWNED, UNRESOLVED, UNPARSEABLE = (
    "delivered", "duplicate", "rejected", "unowned", "unresolved", "unparseable")
OUTCOMES = (DELIVERED, DUPLICATE, REJECTED, UNOWNED, UNRESOLVED, UNPARSEABLE)
NOT_DELIVERED = (REJECTED, UNOWNED, UNRESOLVED, UNPARSEABLE)


class BulkError(Exception):
    """The import cannot go on (a changed file, an unreachable root); what was handled is in the state
    file, and the same command resumes after the cause is gone."""


class BulkIncomplete(BulkError):
    """The whole file was gone through, but some lines are left for a rerun: an error, so that no caller
    takes a partial import for a finished one. The message (one line) says how many and why; `summary`
    has the rest."""

    def __init__(self, summary: Summary):
        why = "; ".join(f"{n} because {reason}" for reason, n in sorted(summary.left_reasons.items(),
                                                                         key=lambda item: -item[1]))
        super().__init__(f"{summary.left} of {summary.total} lines left for a rerun ({RESUME} later): {why}")
        self.summary = summary


class Unavailable(Exception):
    """An owner (or, for one row, the lookup) that cannot take reports now; the message says why, once for
    all the rows it leaves."""


@dataclass(frozen=True)
class Outcome:
    kind: str                  # one of OUTCOMES
    reason: str | None = None  # a stable code for the summary (timestamp_too_old, bad_ip, …)
    message: str = ""          # the full explanation, for the unsent file


@dataclass(frozen=True)
class Row:
    """One CSV record; `problem`, its outcome, when it cannot become a report."""

    line: int                            # the line the record starts on
    values: tuple[str, str, str, str]    # IP, Categories, ReportDate, Comment as written
    report_id: str
    category: Category | None = None
    observed: datetime | None = None
    problem: Outcome | None = None

    @property
    def ip(self) -> str:
        return self.values[0]

    @property
    def comment(self) -> str | None:
        return self.values[3] or None


def batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def seconds(value) -> int | None:
    """A retry_after from a node's answer: whole seconds, not negative; None for anything else ("soon")."""
    return value if type(value) is int and value >= 0 else None


def row_id(reporter_key: str, occurrence: int, values: Sequence[str]) -> str:
    """The same row of the same reporter always gets the same id; `occurrence` tells identical rows apart."""
    return str(uuid.uuid5(ROW_NAMESPACE, "\x1e".join((reporter_key, str(occurrence), *values))))


def parse_row(line: int, values: tuple[str, str, str, str], report_id: str) -> Row:
    ip_text, categories, date, comment = values

    def unparseable(code: str, message: str) -> Row:
        return Row(line, values, report_id, problem=Outcome(UNPARSEABLE, code, message))

    try:
        parse_ip(ip_text)
    except AddressError as exc:
        return unparseable("bad_ip", str(exc))
    try:
        ids = [int(part) for part in categories.split(",") if part.strip()]
    except ValueError:
        return unparseable("bad_categories", f"Categories {categories!r} are not comma-separated AbuseIPDB ids")
    category = from_abuseipdb_ids(ids)
    if category is None:
        return unparseable("no_category", f"AbuseIPDB categories {categories!r} name nothing netimmune reports "
                           "(see report --help)")
    try:
        observed = datetime.fromisoformat(date)
    except ValueError:
        return unparseable("bad_date", f"ReportDate {date!r} is not ISO 8601")
    if observed.tzinfo is None:
        observed = observed.replace(tzinfo=timezone.utc)
    if len(comment) > MAX_TEXT:     # every owner would refuse it (bad_field): refused here, as `report --comment` is
        return Row(line, values, report_id, problem=Outcome(
            REJECTED, "comment_too_long", f"Comment has {len(comment):,} characters; a report's comment may have "
                                          f"at most {MAX_TEXT:,}"))
    return Row(line, values, report_id, category, observed.astimezone(timezone.utc))


def records(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of each CSV record. A record the csv module cannot read (a field over its size limit)
    stops the import: reading on at the next line would take the rest of a quoted field, pasted log lines
    perhaps, for records of their own, and report addresses the file never listed."""
    reader = csv.reader(lines)
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BulkError(f"line {start} is not a readable CSV record ({exc}); a report's comment has at most "
                            f"{MAX_TEXT:,} characters: shorten or remove that record, then import again") from None
        yield start, record
        start = reader.line_num + 1


def read_rows(lines: Iterable[str], reporter_key: str) -> Iterator[Row]:
    """Every record of the CSV, parsed; a header row (first cell `IP`) picks the columns by name."""
    columns: tuple[int | None, ...] | None = None
    seen: Counter = Counter()
    for line, record in records(lines):
        if columns is None:
            columns = header_columns(record)
            if columns is not None:
                continue
            columns = tuple(range(len(COLUMNS)))
        if not any(cell.strip() for cell in record):
            continue
        values = tuple(record[i].strip() if i is not None and i < len(record) else "" for i in columns)
        seen[values] += 1
        yield parse_row(line, values, row_id(reporter_key, seen[values], values))


def header_columns(record: list[str]) -> tuple[int | None, ...] | None:
    names = [cell.strip().lower() for cell in record]
    if not names or names[0] != "ip":
        return None
    if "categories" not in names:
        raise BulkError("the CSV header has no Categories column (expected IP,Categories,ReportDate,Comment)")
    return tuple(names.index(c.lower()) if c.lower() in names else None for c in COLUMNS)


def classify(status: int, answer: dict) -> Outcome:
    """One owner's answer to one report."""
    if status == 202:
        return Outcome(DELIVERED)
    if status == 200:
        return Outcome(DUPLICATE)
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    return Outcome(REJECTED, error.get("code") or f"http_{status}", error.get("message", ""))


@dataclass
class ImportState:
    """What a resumed import needs; saved as JSON whenever an owner answers."""

    source: str                                            # sha256 of the CSV
    handled_through: int = 0                               # every line up to this one is handled, but for
    left_lines: set[int] = field(default_factory=set)      # these, left for a rerun (their owner was down)
    handled_lines: set[int] = field(default_factory=set)   # the lines handled in the chunk in progress
    unsent_bytes: int = 0                                  # how much of the unsent file is accounted for
    counts: Counter = field(default_factory=Counter)
    reasons: dict[str, Counter] = field(default_factory=dict)
    finished: bool = False

    def count(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        if outcome.reason:
            self.reasons.setdefault(outcome.kind, Counter())[outcome.reason] += 1

    @property
    def handled(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict:
        return {"version": STATE_VERSION, "source": self.source, "handled_through": self.handled_through,
                "left_lines": sorted(self.left_lines), "handled_lines": sorted(self.handled_lines),
                "unsent_bytes": self.unsent_bytes,
                "counts": dict(self.counts), "reasons": {k: dict(v) for k, v in self.reasons.items()},
                "finished": self.finished}

    @classmethod
    def from_json(cls, doc: dict) -> ImportState:
        if doc.get("version") == 2:   # an import of the release before, which stopped where now it leaves lines
            doc = {**doc, "version": STATE_VERSION, "left_lines": []}
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"state version {doc.get('version')!r} is not {STATE_VERSION}")
        return cls(doc["source"], doc["handled_through"], set(doc["left_lines"]), set(doc["handled_lines"]),
                   doc["unsent_bytes"], Counter(doc["counts"]), {k: Counter(v) for k, v in doc["reasons"].items()},
                   doc["finished"])

    def save(self, path: Path) -> None:
        """Write a sibling file, flush it to disk, rename it over the old one: never half a state."""
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("w") as out:
            json.dump(self.to_json(), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    reasons: dict[str, dict[str, int]]
    unsent_file: Path
    total: int
    left_reasons: dict[str, int] = field(default_factory=dict)   # why lines are left for a rerun: how many each

    @property
    def left(self) -> int:
        return sum(self.left_reasons.values())

    def to_json(self) -> dict:
        return {"total": self.total, **{kind: self.counts.get(kind, 0) for kind in OUTCOMES},
                "reasons": self.reasons, "left": self.left, "left_reasons": self.left_reasons,
                "unsent_file": str(self.unsent_file)}

    def lines(self) -> list[str]:
        out = [f"{self.total} lines: " + ", ".join(f"{self.counts.get(kind, 0)} {kind}" for kind in OUTCOMES)]
        for kind, reasons in self.reasons.items():
            out.append(f"  {kind}: " + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())))
        if any(self.counts.get(kind) for kind in NOT_DELIVERED):
            out.append(f"lines not delivered, with the reason: {self.unsent_file}")
        return out


class UnsentFile:
    """The rows not delivered, as CSV with their line and reason. On resume it is cut back to what the
    state accounts for, so rows of an interrupted batch are listed once."""

    def __init__(self, path: Path, accounted: int):
        self.path = path
        self.file = path.open("a+", newline="")
        self.file.truncate(min(accounted, self.file.tell()))
        self.writer = csv.writer(self.file)
        if self.file.seek(0, os.SEEK_END) == 0:
            self.writer.writerow(("Line", "Outcome", "Reason", *COLUMNS))

    def add(self, row: Row, outcome: Outcome) -> None:
        self.writer.writerow((row.line, outcome.kind, outcome.message or outcome.reason, *row.values))

    def sync(self) -> int:
        self.file.flush()
        os.fsync(self.file.fileno())
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


def unsent_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name.removesuffix(".json").removesuffix(".state") + ".unsent.csv")


def file_digest(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


class ImportRun:
    """One pass over the CSV: its state and unsent file, and the lines it leaves for a rerun."""

    def __init__(self, state: ImportState, state_path: Path, unsent: UnsentFile, total: int,
                 on_progress: Callable[[int, int, str], None]):
        self.state = state
        self.state_path = state_path
        self.unsent = unsent
        self.total = total
        self.on_progress = on_progress
        self.left: dict[int, str] = {}           # line → why it is left for a rerun
        self.unavailable: dict[str, str] = {}    # endpoint → why it takes nothing more in this run

    def record(self, answered: Iterable[tuple[Row, Outcome]]) -> None:
        """Rows their owner answered are handled from now on, even if the rest of their batch is then given up."""
        for row, outcome in answered:
            self.state.count(outcome)
            if outcome.kind in NOT_DELIVERED:
                self.unsent.add(row, outcome)
            self.state.handled_lines.add(row.line)
        self.save()

    def leave(self, rows: Iterable[Row], reason: str) -> None:
        for row in rows:
            self.left.setdefault(row.line, reason)

    def end_chunk(self, chunk: Sequence[Row], leftovers: Iterable[tuple[Row, Outcome]]) -> None:
        for row, outcome in leftovers:
            self.state.count(outcome)
            self.unsent.add(row, outcome)
        lines = {row.line for row in chunk}
        self.state.left_lines = (self.state.left_lines - lines) | (lines & self.left.keys())
        self.state.handled_through = max(self.state.handled_through, chunk[-1].line)
        # only this chunk's: a rerun's chunks start with the lines left, so lines an interrupted chunk
        # handled may fall in the next one
        self.state.handled_lines -= lines
        self.save()

    def save(self) -> None:
        self.state.unsent_bytes = self.unsent.sync()
        self.state.save(self.state_path)
        self.progress("delivering")

    def progress(self, phase: str) -> None:
        self.on_progress(self.state.handled, self.total, phase)

    def summary(self) -> Summary:
        return Summary(dict(self.state.counts), {k: dict(v) for k, v in self.state.reasons.items()}, self.unsent.path,
                       self.total, dict(Counter(self.left.values())))


class BulkImport:
    def __init__(self, submitter: Submitter, key: KeyPair, reporter: dict, credentials: list | None = None, *,
                 batch_size: int = 500, chunk_size: int = 5000, max_wait: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep,
                 on_progress: Callable[[int, int, str], None] = lambda done, total, phase: None):
        if not 1 <= batch_size <= 1000:
            raise ValueError("a batch holds 1 to 1,000 reports")
        self.submitter = submitter
        self.key = key
        self.reporter = reporter
        self.credentials = credentials or []
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.max_wait = max_wait
        self.sleep = sleep
        self.on_progress = on_progress

    def run(self, csv_path: Path, state_path: Path) -> Summary:
        """The summary once every line is handled; BulkIncomplete, with it, when lines are left for a rerun."""
        state = self._load_state(state_path, file_digest(csv_path))
        total = sum(1 for _ in self._rows(csv_path))
        run = ImportRun(state, state_path, UnsentFile(unsent_path(state_path), state.unsent_bytes), total,
                        self.on_progress)
        try:
            run.save()
            if not state.finished:
                through, left = state.handled_through, set(state.left_lines)
                rows = (row for row in self._rows(csv_path) if row.line > through or row.line in left)
                for chunk in batches(rows, self.chunk_size):
                    self._chunk(chunk, run)
                state.finished = not state.left_lines
                run.save()
        finally:
            run.unsent.close()
        if run.left:
            raise BulkIncomplete(run.summary())
        return run.summary()

    def _rows(self, csv_path: Path) -> Iterator[Row]:
        with csv_path.open(newline="", encoding="utf-8-sig") as source:
            try:
                yield from read_rows(source, self.key.public)
            except UnicodeDecodeError as exc:
                raise BulkError(f"{csv_path} is not UTF-8 text ({exc.reason}); save it as UTF-8 and run the "
                                "command again") from None

    @staticmethod
    def _load_state(path: Path, digest: str) -> ImportState:
        if not path.exists():
            return ImportState(digest)
        try:
            state = ImportState.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise BulkError(f"{path} is not a state file of this version of report --bulk ({exc}); remove it to "
                            "import afresh (rows already delivered are then answered as duplicates)") from None
        if state.source != digest:
            raise BulkError(f"the CSV changed since {path} was written; remove that state file to import it "
                            "afresh (rows already delivered are then answered as duplicates)")
        return state

    def _chunk(self, chunk: Sequence[Row], run: ImportRun) -> None:
        state = run.state
        run.progress("finding owners")
        groups: dict[str, list[Row]] = {}
        leftovers: list[tuple[Row, Outcome]] = []
        for row in chunk:
            if row.line in state.handled_lines:   # before an interruption, whoever owns it now
                continue
            try:
                endpoint, outcome = self._owner(row)
            except Unavailable as exc:
                run.leave([row], str(exc))
                continue
            if outcome is not None:
                leftovers.append((row, outcome))
            else:
                groups.setdefault(endpoint, []).append(row)
        run.progress("delivering")
        for endpoint, rows in groups.items():
            if endpoint not in run.unavailable:
                try:
                    for batch in batches(rows, self.batch_size):
                        self._deliver(endpoint, batch, run)
                except Unavailable as exc:    # not tried again in this run: the other owners go on
                    run.unavailable[endpoint] = str(exc)
            if endpoint in run.unavailable:
                run.leave((row for row in rows if row.line not in state.handled_lines), run.unavailable[endpoint])
        run.end_chunk(chunk, leftovers)

    def _owner(self, row: Row) -> tuple[str | None, Outcome | None]:
        """The row's owner, or the outcome of a row that has none; Unavailable when a node on the way does not
        answer now, BulkError when that node is the root, which every other lookup needs too."""
        if row.problem:
            return None, row.problem
        try:
            resolution = self.submitter.resolver.resolve(row.ip)
        except ResolutionError as exc:
            if exc.failure is not Failure.UNREACHABLE:
                return None, Outcome(UNRESOLVED, exc.failure.value, exc.message)
            node = exc.hops[-1]
            if node == self.submitter.resolver.root_url:
                raise BulkError(f"could not reach the root {node} to find the owner of {row.ip} (line {row.line}): "
                                f"{exc.message}; {RESUME}") from None
            raise Unavailable(f"{node} did not answer the owner lookup") from None
        if not resolution.owned:
            return None, Outcome(UNOWNED, "no_owner", f"no owner of {row.ip} is registered on netimmune")
        return resolution.endpoint, None

    def _envelope(self, row: Row) -> dict:
        report = build_report(row.category, row.ip, self.reporter, row.observed, comment=row.comment,
                              report_id=row.report_id)
        return sign_envelope(report, self.key, self.credentials)

    def _deliver(self, endpoint: str, batch: Sequence[Row], run: ImportRun) -> None:
        """Deliver a batch, recording each answer as it comes, so what the owner took stays handled when it then
        fails or keeps rate-limiting (Unavailable, for the rest); 429s wait and retry in smaller batches, 421s
        follow the referral."""
        envelopes = {row.line: self._envelope(row) for row in batch}
        queue, size, waited, attempt = list(batch), len(batch), 0.0, 0
        while queue:
            part, queue = queue[:size], queue[size:]
            try:
                answers = self.submitter.deliver_batch(endpoint, [envelopes[row.line] for row in part])
            except DeliveryError as exc:
                retryable = exc.kind == "rate_limited" or (exc.kind == "unreachable" and attempt < UNREACHABLE_RETRIES)
                if not retryable:
                    raise Unavailable(exc.message) from None
                queue, attempt = part + queue, attempt + 1
                waited = self._wait(exc.retry_after or 2 ** attempt, waited, exc.message)
                continue
            answered, limited, retry_after, failure = [], [], 0, None
            for row, answer in zip(part, answers, strict=True):
                if answer["status"] == 429:
                    limited.append(row)
                    retry_after = max(retry_after, seconds(answer["answer"].get("retry_after")) or 0)
                elif answer["status"] == 421:
                    try:
                        answered.append((row, self._redirected(envelopes[row.line])))
                    except Unavailable as exc:
                        run.leave([row], str(exc))
                elif answer["status"] >= 500:
                    failure = failure or f"{endpoint} failed on line {row.line}: {answer['answer']}"
                else:
                    answered.append((row, classify(answer["status"], answer["answer"])))
            run.record(answered)
            if failure:
                raise Unavailable(failure)
            if limited:
                queue, size, attempt = limited + queue, max(1, size // 2), attempt + 1
                waited = self._wait(retry_after or 2 ** attempt, waited, f"{endpoint} rate-limits this reporter key")

    def _redirected(self, envelope: dict) -> Outcome:
        """The owner moved since the lookup: deliver this one on its own, which follows the referral."""
        try:
            delivery = self.submitter.deliver(envelope)
        except DeliveryError as exc:
            if exc.kind == "no_owner":
                return Outcome(UNOWNED, "no_owner", exc.message)
            if exc.kind == "rejected":
                return Outcome(REJECTED, f"http_{exc.status}", exc.message)
            raise Unavailable(exc.message) from None
        return classify(delivery.status, delivery.answer)

    def _wait(self, seconds: float, waited: float, why: str) -> float:
        seconds = min(seconds, MAX_SINGLE_WAIT)
        if waited + seconds > self.max_wait:
            already = f" ({waited:.0f} s waited already)" if waited else ""
            raise Unavailable(f"{why}, and waiting {seconds:.0f} s more would pass --max-wait {self.max_wait:.0f}"
                              f"{already}")
        self.sleep(seconds)
        return waited + seconds
