"""Delegations and tokens in DynamoDB, with longest-prefix match answered by one BatchGetItem.

A delegation's key is (family, prefix length, network, role): pk `DELEGATION#<family>#<length>`, sk
`<network as fixed-width hex>#<role>`. The delegations covering an address are therefore the items
whose keys follow from the address and a prefix length, so a lookup asks for the key of every
(family, length, role) in use, all in one BatchGetItem, and keeps the most specific answer. A granted
answer takes the chain of the most specific held delegation covering it; that held item, if any,
covers the address too and so came back in the same BatchGetItem.

The (family, length, role) triples in use are kept in one item (`DELEGATION`/`LENGTHS`, a string
set) and cached in the adapter: read lazily, again once the cache is `lengths_ttl` seconds old (so
another process's new lengths show within that time), and refreshed at once by this process's own
writes. A save adds its triples to that item before it writes the delegations, so a fresh cache
never misses a stored delegation. The set only grows: taking a triple out could race a save of the
same length elsewhere, while a triple no longer in use costs one more key per lookup. One family has
at most 33 lengths (IPv4) or 129 (IPv6), two roles each; past 100 keys a lookup takes one request
per 100.

There are no transactions: a save checks the whole batch's serials first (so a stale batch writes
nothing), then writes each delegation with a condition on its serial, which still refuses an older
serial that raced past the check.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from ..core.ports import DelegationMatch, Role, StaleDelegation, StoredToken
from ..protocol.delegation import Delegation, parse_delegation
from ..protocol.encoding import format_time, parse_time
from ..protocol.prefixes import IPAddress, IPNetwork
from .dynamodb_table import DynamoDBTable, Key, epoch, moment

LENGTHS = ("DELEGATION", "LENGTHS")
GRANT_LEASE = ("DELEGATION", "GRANT_LEASE")
GRANT_LEASE_SECONDS = 10   # far more than a grant's check and save take
TOKENS = "TOKENS"
_BITS = {4: 32, 6: 128}

Triple = tuple[int, int, Role]  # (family, prefix length, role)


def _masked(value: int, family: int, length: int) -> int:
    shift = _BITS[family] - length
    return value >> shift << shift


def _network_text(family: int, network: int) -> str:
    """Fixed-width hex, so sort keys sort in address order."""
    return f"{network:0{_BITS[family] // 4}x}"


def delegation_key(family: int, length: int, network: int, role: Role) -> Key:
    return f"DELEGATION#{family}#{length}", f"{_network_text(family, network)}#{role.value}"


def _prefix_key(prefix: IPNetwork, role: Role) -> Key:
    return delegation_key(prefix.version, prefix.prefixlen, int(prefix.network_address), role)


def _triple_text(family: int, length: int, role: Role) -> str:
    return f"{family}/{length}/{role.value}"


def _parse_triple(text: str) -> Triple:
    family, length, role = text.split("/")
    return int(family), int(length), Role(role)


@dataclass(frozen=True)
class _Stored:
    role: Role
    family: int
    length: int
    network: int
    serial: int
    document_json: str
    chain_json: str
    not_after: str

    @classmethod
    def from_item(cls, item: dict) -> _Stored:
        _, family, length = item["pk"].split("#")
        network, role = item["sk"].split("#")
        return cls(Role(role), int(family), int(length), int(network, 16), item["serial"], item["document"],
                   item["chain"], item["not_after"])

    @property
    def specificity(self) -> tuple[int, bool]:
        """Longer prefixes win; on the same prefix a grant wins, so granting all of it refers it on."""
        return self.length, self.role is Role.GRANTED

    def match(self, parent: _Stored | None) -> DelegationMatch:
        chain = parent.chain_json if self.role is Role.GRANTED and parent is not None else self.chain_json
        return DelegationMatch(self.role, self.document_json, chain, parse_time(self.not_after).timestamp())


class DynamoDBDelegationStore:
    def __init__(self, client, table_name: str, lengths_ttl: float = 60.0):
        self.table = DynamoDBTable(client, table_name)
        self.lengths_ttl = lengths_ttl
        self._in_use: frozenset[Triple] = frozenset()
        self._read_at: float | None = None

    # -- the (family, length, role) triples in use ------------------------------------------------
    def _remember(self, texts: Iterable[str]) -> frozenset[Triple]:
        self._in_use = frozenset(_parse_triple(text) for text in texts)
        self._read_at = time.monotonic()
        return self._in_use

    def _triples(self, fresh: bool = False) -> frozenset[Triple]:
        if fresh or self._read_at is None or time.monotonic() - self._read_at > self.lengths_ttl:
            item = self.table.get(*LENGTHS)
            return self._remember(item["in_use"] if item else ())
        return self._in_use

    # -- reads -----------------------------------------------------------------------------------
    def longest_match(self, ip: IPAddress) -> DelegationMatch | None:
        value = int(ip)
        keys = [delegation_key(family, length, _masked(value, family, length), role)
                for family, length, role in self._triples() if family == ip.version]
        found = [_Stored.from_item(item) for item in self.table.batch_get(keys)]
        if not found:
            return None
        best = max(found, key=lambda s: s.specificity)
        held = [s for s in found if s.role is Role.HELD and s.length <= best.length]
        return best.match(max(held, key=lambda s: s.length, default=None))

    def list_delegations(self, role: Role | None = None) -> list[DelegationMatch]:
        triples = self._triples(fresh=True)
        stored = [_Stored.from_item(item)
                  for family, length in sorted({(f, n) for f, n, _ in triples})
                  for item in self.table.query(f"DELEGATION#{family}#{length}")]
        held = {(s.family, s.length, s.network): s for s in stored if s.role is Role.HELD}
        held_lengths = sorted({(f, n) for f, n, r in triples if r is Role.HELD}, key=lambda t: -t[1])

        def parent(s: _Stored) -> _Stored | None:
            for family, length in held_lengths:
                if family == s.family and length <= s.length:
                    found = held.get((family, length, _masked(s.network, family, length)))
                    if found:
                        return found
            return None

        chosen = sorted((s for s in stored if role is None or s.role is role),
                        key=lambda s: (s.family, s.network, s.length, s.role is Role.GRANTED))
        return [s.match(parent(s) if s.role is Role.GRANTED else None) for s in chosen]

    @contextmanager
    def granting(self) -> Iterator[None]:
        """A lease item, taken on condition that it is free or its time is up, so that a holder that died frees it
        after GRANT_LEASE_SECONDS; a grant waits twice that at most, so a dead holder's lease runs out meanwhile."""
        owner, deadline = uuid.uuid4().hex, time.monotonic() + 2 * GRANT_LEASE_SECONDS
        while self.table.update(*GRANT_LEASE, "SET #owner = :owner, #until = :until",
                                "attribute_not_exists(#until) OR #until < :now",
                                {"owner": owner, "until": time.time() + GRANT_LEASE_SECONDS,
                                 "now": time.time()}) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"another grant held the lease for over {2 * GRANT_LEASE_SECONDS} s")
            time.sleep(0.05)
        try:
            yield
        finally:
            self.table.update(*GRANT_LEASE, "REMOVE #owner, #until", "#owner = :owner", {"owner": owner})

    def overlapping_grants(self, prefix: IPNetwork) -> list[Delegation]:
        """One BatchGetItem for the grants as wide as prefix or wider (a key per length in use), and a Query per
        narrower length in use for those inside it (a sort-key range: keys sort in address order)."""
        family, length = prefix.version, prefix.prefixlen
        first, last = int(prefix.network_address), int(prefix.broadcast_address)
        lengths = sorted({n for f, n, role in self._triples(fresh=True) if f == family and role is Role.GRANTED})
        items = self.table.batch_get(delegation_key(family, n, _masked(first, family, n), Role.GRANTED)
                                     for n in lengths if n <= length)
        for n in (n for n in lengths if n > length):
            items += self.table.query(f"DELEGATION#{family}#{n}", sk_between=(_network_text(family, first),
                                                                              f"{_network_text(family, last)}#~"))
        found = (_Stored.from_item(item) for item in items)
        return [parse_delegation(json.loads(s.document_json)) for s in found if s.role is Role.GRANTED]

    def next_serial(self, prefix: IPNetwork) -> int:
        network = _network_text(prefix.version, int(prefix.network_address))
        serials = [item["serial"] for item in self.table.query(f"DELEGATION#{prefix.version}#{prefix.prefixlen}",
                                                               f"{network}#")]
        return max(serials, default=0) + 1

    # -- writes ----------------------------------------------------------------------------------
    def save_delegations(self, role: Role, delegations: Iterable[Delegation],
                         chains: Sequence[Sequence[dict]] | None = None) -> None:
        items = list(delegations)
        chains = chains if chains is not None else [()] * len(items)
        pairs = list(zip(items, chains, strict=True))
        if not pairs:
            return
        self._refuse_stale(role, items)
        added = self.table.update(*LENGTHS, "ADD #in_use :triples", returns="ALL_NEW", values={
            "triples": {_triple_text(d.prefix.version, d.prefix.prefixlen, role) for d in items}})
        self._remember(added["in_use"])
        for delegation, chain in pairs:
            pk, sk = _prefix_key(delegation.prefix, role)
            item = {"pk": pk, "sk": sk, "prefix": str(delegation.prefix), "serial": delegation.serial,
                    "not_after": format_time(delegation.not_after),
                    "document": json.dumps(delegation.document, separators=(",", ":")),
                    "chain": json.dumps(list(chain), separators=(",", ":"))}
            if not self.table.put(item, "attribute_not_exists(#pk) OR #serial <= :serial",
                                  {"serial": delegation.serial}):
                raise StaleDelegation(f"{delegation.prefix} already has a serial newer than {delegation.serial}")

    def _refuse_stale(self, role: Role, items: Sequence[Delegation]) -> None:
        serials = {(item["pk"], item["sk"]): item["serial"] for item in self.table.batch_get(
            (_prefix_key(d.prefix, role) for d in items), consistent=True, projection="#pk, #sk, #serial")}
        for delegation in items:
            stored = serials.get(_prefix_key(delegation.prefix, role))
            if stored is not None and stored > delegation.serial:
                raise StaleDelegation(f"{delegation.prefix} already has serial {stored}, newer than "
                                      f"{delegation.serial}")

    def remove_delegation(self, role: Role, prefix: IPNetwork) -> bool:
        return self.table.delete(*_prefix_key(prefix, role))


class DynamoDBTokenStore:
    """All tokens in one partition, keyed by their hash: a node has few, and `token list` is then one Query."""

    def __init__(self, client, table_name: str):
        self.table = DynamoDBTable(client, table_name)

    def save_token(self, token_hash: str, role: str, label: str, created: datetime) -> None:
        self.table.put({"pk": TOKENS, "sk": token_hash, "role": role, "label": label, "created": epoch(created)})

    def token_role(self, token_hash: str) -> str | None:
        item = self.table.get(TOKENS, token_hash)
        return item["role"] if item else None

    def list_tokens(self) -> list[StoredToken]:
        return [StoredToken(item["sk"], item["role"], item["label"], moment(item["created"]))
                for item in self.table.query(TOKENS)]

    def delete_token(self, token_hash: str) -> bool:
        return self.table.delete(TOKENS, token_hash)
