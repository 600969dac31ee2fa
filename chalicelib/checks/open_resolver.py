"""Open resolver check: one recursive query over UDP, judged by the reply's header and answer.

- NOERROR, recursion available (RA) and records for the name: confirmed.
- REFUSED, or RA clear (an authoritative-only server): refuted.
- RA set but SERVFAIL, NXDOMAIN or no records: inconclusive; it offers recursion and did not
  deliver, which may be a broken upstream or a filtering policy as much as a closed door.
- Port unreachable (ICMP, seen on the connected socket): refuted; nothing listens there.
- No reply to any try: inconclusive. Silence may be a firewall, a rate limit or a lost packet as
  much as a closed port; the transcript records it.

`qname` should be a name this node controls and that has records, so the answer is known.
"""
from __future__ import annotations

import asyncio
import socket

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.rcode
import dns.rdatatype

from .result import CheckResult, Transcript, Verdict, endpoint


def _judge(reply: dns.message.Message) -> tuple[Verdict, str]:
    rcode = dns.rcode.to_text(reply.rcode())
    if not reply.flags & dns.flags.RA:
        return Verdict.REFUTED, f"answers without recursion available (RA clear, {rcode})"
    if reply.rcode() == dns.rcode.REFUSED:
        return Verdict.REFUTED, "refuses recursive queries (REFUSED)"
    if reply.rcode() == dns.rcode.NOERROR and reply.answer:
        return Verdict.CONFIRMED, "resolved a recursive query for a stranger (NOERROR, RA)"
    return Verdict.INCONCLUSIVE, f"offers recursion but returned {rcode} with {len(reply.answer)} answer records"


async def _ask(ip: str, port: int, query: dns.message.Message, timeout: float, tries: int,
               transcript: Transcript) -> dns.message.Message | None:
    """The first reply to up to `tries` queries, None when none came.

    The socket is connected, so an ICMP port unreachable raises ConnectionRefusedError instead of
    passing for silence.
    """
    backend = dns.asyncbackend.get_backend("asyncio")
    family = dns.inet.af_for_address(ip)
    question = query.question[0]
    asked = (f"query id={query.id} {question.name.to_text(omit_final_dot=True)} "
             f"{dns.rdatatype.to_text(question.rdtype)} flags={dns.flags.to_text(query.flags)}")
    async with await backend.make_socket(family, socket.SOCK_DGRAM, 0, None, (ip, port)) as sock:
        for _ in range(tries):
            transcript.sent(asked)
            try:
                return await dns.asyncquery.udp(query, ip, timeout=timeout, port=port, sock=sock)
            except dns.exception.Timeout:
                transcript.note(f"no reply within {timeout:g} s")
            except ConnectionRefusedError:
                raise  # an answer, not a failure to get one: the caller judges it
            except (OSError, dns.exception.DNSException) as exc:
                transcript.note(f"no usable reply: {type(exc).__name__}: {exc}")
    return None


async def check_open_resolver(ip: str, port: int = 53, qname: str = "example.com", rdtype: str = "A",
                              timeout: float = 3.0, tries: int = 2,
                              probe_slots: asyncio.Semaphore | None = None) -> CheckResult:
    """Send up to `tries` recursive queries, each waiting `timeout` seconds, and judge the first reply.

    The queries share one socket, which holds one of `probe_slots` while the check runs.
    """
    transcript = Transcript(f"{endpoint(ip, port)} dns")
    query = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype))  # RD is set by default
    try:
        async with probe_slots or asyncio.Semaphore(1):
            reply = await _ask(ip, port, query, timeout, tries, transcript)
    except ConnectionRefusedError:
        transcript.note("port unreachable")
        return CheckResult("open-resolver", ip, Verdict.REFUTED, f"nothing listens on UDP port {port}",
                           transcript.lines, {"port": port, "qname": qname})
    if reply is None:
        return CheckResult("open-resolver", ip, Verdict.INCONCLUSIVE, f"no reply to {tries} recursive queries",
                           transcript.lines, {"port": port, "qname": qname})
    rcode = dns.rcode.to_text(reply.rcode())
    answers = [record.to_text() for record in reply.answer]
    transcript.received(f"reply id={reply.id} rcode={rcode} flags={dns.flags.to_text(reply.flags)}")
    for record in answers:
        transcript.received(f"answer {record}")
    verdict, summary = _judge(reply)
    details = {"port": port, "qname": qname, "rcode": rcode, "flags": dns.flags.to_text(reply.flags),
               "answer": answers}
    return CheckResult("open-resolver", ip, verdict, summary, transcript.lines, details)
