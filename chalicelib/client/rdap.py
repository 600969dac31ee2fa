"""The fallback for address space no node claims: the RIR's abuse contact, found in RDAP, gets the report by email.

When the referral tree answers "none" for an address, its owner is not on netimmune, and the report goes
where abuse reports went before: the abuse mailbox the Regional Internet Registry lists for the network.
IANA's RDAP bootstrap files (RFC 9224; a copy ships in `chalicelib/data/rdap-bootstrap/`) name the RIR's
RDAP server for an address; that server's answer to `ip/<address>` (RFC 9083) holds entities, nested to
any depth, and the one with the role "abuse" carries the mailbox in its jCard (RFC 7095).

How the registries differ, and what this module does about it:
- ARIN nests the abuse contact (a POC) inside the registrant organisation's entity.
- RIPE links the abuse-c from the organisation, and marks the address `{"type": "abuse"}` in the jCard.
- APNIC lists the IRT object at the top level with the role "abuse", sometimes with several addresses.
- A server may give a nested entity only by handle and links, without its jCard; then the entity is
  fetched as `entity/<handle>` from the same server. The `links` in an answer are never followed: a test's
  local RDAP server serves recorded answers that name the real registries there.
- A registry answers 404 for space it does not hold and may redirect (RFC 7480 §5.2) to the one that does.
  A redirect is followed only to a server the bootstrap names, and every request is https (outside dev
  mode): the answer names the mailbox that receives the report and its evidence.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import os
import secrets
import smtplib
import tempfile
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import parseaddr
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import httpx

from ..protocol.arf import build_arf_email
from ..protocol.prefixes import IPAddress, IPNetwork, parse_ip
from ..protocol.xarf import xarf_report
from .fetch import Fetcher, FetchError

ACCEPT = "application/rdap+json, application/json;q=0.9"
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)
MAX_ENTITY_DEPTH = 4   # entities nested deeper than this are not searched
MAX_ENTITY_FETCHES = 3  # follow-up GETs of entities that came without their jCard
SMTP_TIMEOUT = 10.0

Bootstrap = tuple[tuple[IPNetwork, tuple[str, ...]], ...]


class RdapError(Exception):
    """The lookup itself failed (unreachable, timed out, an answer that is not RDAP): it says nothing
    about whether the address has an abuse contact, so the caller should say "try again later"."""


class MailError(Exception):
    """The mail server refused the report or could not be reached. The report is not lost: `kept` is the .eml file
    it was written to instead (None without an outbox folder), for the person to send to `recipient`."""

    def __init__(self, server: str, failure: str, recipient: str, kept: str | None):
        super().__init__(f"the mail server {server} {failure}")
        self.recipient = recipient
        self.kept = kept


@dataclass(frozen=True)
class AbuseContact:
    email: str
    name: str | None     # the contact's formatted name (jCard "fn"), e.g. "Abuse Desk"
    handle: str | None   # the registry's handle of the contact, e.g. ABUSE5250-ARIN
    network: str | None  # the registry's name of the network, e.g. EXAMPLE-NET-1
    range: str | None    # the network's first and last address, "192.0.2.0 - 192.0.2.127"
    server: str          # the RDAP base URL that answered


def parse_bootstrap(*documents: dict) -> Bootstrap:
    """Entries (prefix, base URLs) from RFC 9224 bootstrap documents, most specific prefix first so the
    first match is the longest; within an entry, https before http."""
    entries: list[tuple[IPNetwork, tuple[str, ...]]] = []
    try:
        for document in documents:
            for prefixes, urls in document["services"]:
                bases = tuple(url if url.endswith("/") else url + "/" for url in urls)
                bases = tuple(sorted(bases, key=lambda url: not url.startswith("https://")))
                entries.extend((ipaddress.ip_network(prefix), bases) for prefix in prefixes)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an RDAP bootstrap file for IP addresses (RFC 9224): {exc!r}") from None
    return tuple(sorted(entries, key=lambda entry: -entry[0].prefixlen))


@functools.cache
def load_bootstrap() -> Bootstrap:
    """IANA's IPv4 and IPv6 bootstrap files as shipped inside the package."""
    folder = resources.files("chalicelib").joinpath("data", "rdap-bootstrap")
    return parse_bootstrap(*(json.loads(folder.joinpath(name).read_text("utf-8"))
                             for name in ("ipv4.json", "ipv6.json")))


def rdap_base_urls(ip: str | IPAddress, bootstrap: Bootstrap | None = None) -> list[str]:
    """The RDAP base URLs for the longest bootstrap prefix covering `ip`, https first; [] when IANA names
    no registry (reserved, special-purpose or unallocated space)."""
    address = parse_ip(ip) if isinstance(ip, str) else ip
    for network, bases in load_bootstrap() if bootstrap is None else bootstrap:
        if network.version == address.version and address in network:
            return list(bases)
    return []


def registry_hosts(bootstrap: Bootstrap) -> frozenset[str]:
    """The hosts of every RDAP server the bootstrap names: the only places a redirect may lead."""
    return frozenset(httpx.URL(url).host for _, bases in bootstrap for url in bases)


def find_abuse_contact(ip: str, http: Fetcher, bootstrap: Bootstrap | None = None,
                       base_url_override: str | None = None) -> AbuseContact | None:
    """The abuse contact the registry lists for `ip`; None when the registry holds no network for it (404)
    or the network has no abuse entity with an email address. Raises RdapError when no server answered.

    `base_url_override` asks that server instead of the one the bootstrap names. Each request is bounded by
    `http`; each base URL is tried in turn (https first) until one answers, and one that is plain http is
    refused outside dev mode.
    """
    address = parse_ip(ip)
    bootstrap = load_bootstrap() if bootstrap is None else bootstrap
    if base_url_override:
        bases = [base_url_override if base_url_override.endswith("/") else base_url_override + "/"]
    else:
        bases = rdap_base_urls(address, bootstrap)
    registries = registry_hosts(bootstrap)
    failures: list[str] = []
    for base in bases:
        try:
            return _lookup(address, base, http, registries)
        except RdapError as exc:
            failures.append(str(exc))
    if failures:
        raise RdapError("; ".join(failures))
    return None


def _lookup(address: IPAddress, base: str, http: Fetcher, registries: frozenset[str]) -> AbuseContact | None:
    query = f"ip/{address}"
    answered_at, network = _get(http, base + query, registries)
    if network is None:
        return None
    if network.get("objectClassName") != "ip network":
        raise RdapError(f"{base + query} did not answer with an RDAP ip network object")
    # After a redirect the registry that answered is the one to ask about entities.
    server = answered_at[:-len(query)] if answered_at.endswith(query) else base
    start, end = network.get("startAddress"), network.get("endAddress")
    found = _abuse_entity(network.get("entities"), server, http, registries)
    if found is None:
        return None
    entity, email = found
    return AbuseContact(email=email, name=_jcard_value(entity, "fn"), handle=_text(entity.get("handle")),
                        network=_text(network.get("name")) or _text(network.get("handle")),
                        range=f"{start} - {end}" if start and end else None, server=server)


def _abuse_entity(entities: object, server: str, http: Fetcher, registries: frozenset[str]) -> tuple[dict, str] | None:
    """Breadth first, so the contact nearest the network wins over one further up an organisation."""
    queue = deque((entity, 1) for entity in _list(entities))
    fetches = 0
    while queue:
        entity, depth = queue.popleft()
        if not isinstance(entity, dict):
            continue
        if "abuse" in _list(entity.get("roles")):
            email = _abuse_email(entity)
            handle = _text(entity.get("handle"))
            if email is None and handle and "vcardArray" not in entity and fetches < MAX_ENTITY_FETCHES:
                fetches += 1
                _, fetched = _get(http, f"{server}entity/{quote(handle, safe='')}", registries)
                if fetched is not None:
                    entity, email = fetched, _abuse_email(fetched)
            if email:
                return entity, email
        if depth < MAX_ENTITY_DEPTH:
            queue.extend((child, depth + 1) for child in _list(entity.get("entities")))
    return None


def _abuse_email(entity: dict) -> str | None:
    """The entity's best email: one typed "abuse" first, then by PREF (1 is most preferred), then order."""
    candidates = []
    for index, (params, value) in enumerate(_jcard(entity, "email")):
        address = _mailbox(value)
        if address is None:
            continue
        types = params.get("type", [])
        types = [types] if isinstance(types, str) else _list(types)
        try:
            pref = int(params.get("pref", 100))
        except (TypeError, ValueError):
            pref = 100
        candidates.append(("abuse" not in [str(t).lower() for t in types], pref, index, address))
    return min(candidates)[3] if candidates else None


def _mailbox(value: object) -> str | None:
    """A plain address from a jCard email value; None for anything that is not one (or is redacted)."""
    if not isinstance(value, str) or len(value) > 254 or "\r" in value or "\n" in value:
        return None
    address = parseaddr(value.strip().removeprefix("mailto:"))[1]
    local, _, domain = address.rpartition("@")
    return address if local and "." in domain and " " not in address else None


def _jcard(entity: dict, name: str) -> Iterable[tuple[dict, object]]:
    """(parameters, value) of each property `name` of the jCard: ["vcard", [[name, params, type, value], …]]."""
    card = entity.get("vcardArray")
    if not (isinstance(card, list) and len(card) == 2 and isinstance(card[1], list)):
        return
    for prop in card[1]:
        if isinstance(prop, list) and len(prop) >= 4 and prop[0] == name:
            yield (prop[1] if isinstance(prop[1], dict) else {}), prop[3]


def _jcard_value(entity: dict, name: str) -> str | None:
    return next((_text(value) for _, value in _jcard(entity, name) if _text(value)), None)


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _get(http: Fetcher, url: str, registries: frozenset[str]) -> tuple[str, dict | None]:
    """(the URL that answered after redirects, the JSON object); None for 404. Anything else is an RdapError."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = http.get(url, headers={"Accept": ACCEPT})
        except FetchError as exc:
            raise RdapError(exc.message) from None
        if response.status_code not in REDIRECTS:
            break
        target = response.url.join(response.headers.get("Location", ""))
        if target.host not in registries:
            raise RdapError(f"{url} redirected to {target}, which is not an RDAP server the bootstrap names")
        url = str(target)
    else:
        raise RdapError(f"{url}: more than {MAX_REDIRECTS} redirects")
    if response.status_code == 404:
        return url, None
    if response.status_code != 200:
        raise RdapError(f"{url} answered HTTP {response.status_code}")
    try:
        document = response.json()
    except (ValueError, RecursionError):
        raise RdapError(f"{url} did not answer with JSON") from None
    if not isinstance(document, dict):
        raise RdapError(f"{url} did not answer with a JSON object")
    return url, document


def send_or_write(message: EmailMessage, smtp_host: str | None = None, smtp_port: int = 25,
                  outbox_dir: str | Path | None = None) -> str:
    """Send through the configured SMTP server, or else write an .eml file for the person to send;
    returns where it went ("smtp://host:port" or the file's path). A mail server that refuses the report or
    cannot be reached is a MailError, after the .eml is written to the outbox all the same.

    The EHLO name is the sender's domain: a reporter's laptop has no meaningful host name, and looking
    one up (smtplib's default) can stall on DNS.
    """
    if smtp_host:
        ehlo = parseaddr(str(message["From"]))[1].rpartition("@")[2] or "localhost"
        try:
            with smtplib.SMTP(smtp_host, smtp_port, timeout=SMTP_TIMEOUT, local_hostname=ehlo) as smtp:
                refused = smtp.send_message(message)
            if refused:
                raise smtplib.SMTPRecipientsRefused(refused)
        except OSError as exc:              # smtplib's own errors are OSErrors too
            kept = _write_eml(message, outbox_dir) if outbox_dir is not None else None
            raise MailError(f"{smtp_host}:{smtp_port}", _mail_failure(exc), str(message["To"]), kept) from None
        return f"smtp://{smtp_host}:{smtp_port}"
    if outbox_dir is None:
        raise ValueError("say where the report goes: an SMTP server or an outbox folder")
    return _write_eml(message, outbox_dir)


def _mail_failure(exc: OSError) -> str:
    """What went wrong with the mail server, in words: a refusal quotes its reply."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
    elif isinstance(exc, smtplib.SMTPResponseException):
        replies = [(exc.smtp_code, exc.smtp_error)]
    else:
        return f"could not be reached ({exc})"
    said = "; ".join(f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
                     for code, text in replies)
    return f"refused the report ({said})"


def _write_eml(message: EmailMessage, outbox_dir: str | Path) -> str:
    folder = Path(outbox_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}-xarf-{secrets.token_hex(4)}.eml"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(message.as_bytes())
        os.replace(temporary, path)  # the file appears whole or not at all
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return str(path)


@dataclass(frozen=True)
class Fallback:
    contact: AbuseContact
    message: EmailMessage
    destination: str  # what send_or_write returned


def report_to_abuse_contact(report_body: dict, http: Fetcher, *, sender: str, reporter_name: str | None = None,
                            smtp_host: str | None = None, smtp_port: int = 25, outbox_dir: str | Path | None = None,
                            bootstrap: Bootstrap | None = None,
                            base_url_override: str | None = None) -> Fallback | None:
    """The whole fallback for one report: find the abuse contact, build the X-ARF email, send or write it.
    None when the registry lists no abuse contact; RdapError when the registry could not be asked, MailError
    when the mail server failed (see send_or_write), OSError when the outbox could not be written."""
    contact = find_abuse_contact(report_body["source_identifier"], http, bootstrap, base_url_override)
    if contact is None:
        return None
    message = build_arf_email(xarf_report(report_body), to=contact.email, sender=sender, reporter_name=reporter_name)
    return Fallback(contact, message, send_or_write(message, smtp_host, smtp_port, outbox_dir))
