"""Open resolver check: one recursive query over UDP, judged by the reply's header and answer.

- NOERROR, recursion available (RA) and records for the name: confirmed.
- REFUSED, or RA clear (an authoritative-only server): refuted.
- RA set but SERVFAIL, NXDOMAIN or no records: inconclusive; it offers recursion and did not
  deliver, which may be a broken upstream or a filtering policy as much as a closed door.
- No reply to any try: refuted. An open resolver answers anyone, and UDP has no other way to say
  "closed"; the transcript records the silence.

`qname` should be a name this node controls and that has records, so the answer is known.
"""
from __future__ import annotations

import dns.asyncquery
import dns.exception
import dns.flags
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


async def check_open_resolver(ip: str, port: int = 53, qname: str = "example.com", rdtype: str = "A",
                              timeout: float = 3.0, tries: int = 2) -> CheckResult:
    """Send up to `tries` recursive queries, each waiting `timeout` seconds, and judge the first reply."""
    transcript = Transcript(f"{endpoint(ip, port)} dns")
    query = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype))  # RD is set by default
    reply = None
    for _ in range(tries):
        transcript.sent(f"query id={query.id} {qname} {rdtype} flags={dns.flags.to_text(query.flags)}")
        try:
            reply = await dns.asyncquery.udp(query, ip, timeout=timeout, port=port)
            break
        except dns.exception.Timeout:
            transcript.note(f"no reply within {timeout:g} s")
        except (OSError, dns.exception.DNSException) as exc:
            transcript.note(f"no usable reply: {type(exc).__name__}: {exc}")
    if reply is None:
        return CheckResult("open-resolver", ip, Verdict.REFUTED, f"no reply to {tries} recursive queries",
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
