"""`report`: find who runs an address through the referral tree and tell them, signed.

    report --open-proxy 198.51.100.7 < squid-access.log
    report --bulk abuseipdb-bulk-report.csv
    report init --root-url URL --root-key KEY --org "Example" --contact abuse@example.net
    report status REPORT_ID
"""
from __future__ import annotations

import json
import mimetypes
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from ..client.bulk import BulkError, BulkImport
from ..client.config import ConfigError, ReporterConfig, config_dir
from ..client.resolver import Resolution, Resolver
from ..client.submitter import DeliveryError, Submitter
from ..protocol.categories import CATEGORIES, by_slug
from ..protocol.delegation import parse_delegation
from ..protocol.encoding import EncodingError, parse_time
from ..protocol.keys import KeyPair, parse_public_key
from ..protocol.prefixes import AddressError, parse_ip
from ..protocol.report import MAX_EVIDENCE_BYTES, Evidence, build_report, sign_envelope
from .common import CommandError, print_json

EXIT_NO_OWNER = 3
CONTEXT = {"help_option_names": ["-h", "--help"]}


def config_option(func):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="reporter configuration [default: $NETIMMUNE_CONFIG_DIR or ~/.config/netimmune"
                             "/report.json]")(func)


def load_config(path: Path | None) -> ReporterConfig:
    try:
        return ReporterConfig.load(path or config_dir() / "report.json")
    except (ConfigError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def describe_chain(chain) -> list[str]:
    lines = []
    for index, document in enumerate(chain, 1):
        link = parse_delegation(document)
        lines.append(f"  {index}. {str(link.prefix):<24} issuer {link.issuer[:20]}… → holder {link.holder[:20]}…")
        lines.append(f"     endpoint {link.endpoint}, serial {link.serial}, "
                     f"valid until {document['delegation']['not_after']}")
    return lines


def resolution_json(resolution: Resolution) -> dict:
    return {"ip": resolution.ip, "answer": resolution.answer, "endpoint": resolution.endpoint,
            "prefix": resolution.prefix, "hops": list(resolution.hops),
            "referral": resolution.document, "chain": list(resolution.chain)}


def read_evidence(files: tuple[Path, ...]) -> tuple[Evidence, ...]:
    items = []
    for path in files:
        try:
            payload = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read evidence {path}: {exc}") from None
        kind = mimetypes.guess_type(path.name)[0] or ("text/plain" if path.suffix in (".log", ".txt", "") else
                                                        "application/octet-stream")
        items.append(Evidence(kind, payload, path.name))
    if not sys.stdin.isatty():
        payload = sys.stdin.buffer.read(MAX_EVIDENCE_BYTES + 1)
        if payload:
            items.append(Evidence("text/plain", payload, "standard input"))
    size = sum(len(item.payload) for item in items)
    if size > MAX_EVIDENCE_BYTES:
        raise CommandError(f"evidence is {size} bytes; a report carries at most {MAX_EVIDENCE_BYTES} "
                           "(256 KiB): pass the relevant lines only")
    return tuple(items)


def sent_log() -> Path:
    return config_dir() / "sent.jsonl"


def remember(report_id: str, ip: str, endpoint: str) -> None:
    """A local note of where each report went, so `report status` knows whom to ask."""
    path = sent_log()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(json.dumps({"report_id": report_id, "ip": ip, "endpoint": endpoint}) + "\n")


def category_flags(func):
    for slug, category in reversed(list(CATEGORIES.items())):
        func = click.option(category.flag, "category", flag_value=slug, help=category.title)(func)
    return func


def bulk_options(func):
    options = [
        click.option("--bulk", "bulk_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="report every line of an AbuseIPDB bulk-report CSV (IP,Categories,ReportDate,Comment) "
                          "to its owner; run it again to resume an interrupted import"),
        click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="with --bulk: where progress is kept [default: FILE.state.json]"),
        click.option("--batch-size", type=click.IntRange(1, 1000), default=500, show_default=True,
                     help="with --bulk: reports per request"),
        click.option("--max-wait", type=click.IntRange(0), default=300, show_default=True,
                     help="with --bulk: seconds to wait for one rate-limited owner before stopping"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command(context_settings=CONTEXT)
@category_flags
@click.argument("ip", required=False)
@click.option("--port", type=click.IntRange(0, 65535), help="source port of the abuse")
@click.option("--comment", help="a sentence for the owner")
@click.option("--time", "observed", help="when the abuse was observed (RFC 3339 UTC; default now)")
@click.option("--evidence", "evidence_files", multiple=True, type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="a file of evidence (repeatable); stdin counts too when it is not a terminal")
@click.option("--dry-run", is_flag=True, help="only find and print the responsible node and its chain")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--root-url", envvar="NETIMMUNE_ROOT_URL", help="override the configured root URL")
@click.option("--root-key", envvar="NETIMMUNE_ROOT_KEY", help="override the configured root key")
@click.option("--no-fallback", is_flag=True, help="when the owner is not on netimmune, do not mail its RDAP "
              "abuse contact (by default an X-ARF report is mailed, or written to the outbox folder)")
@click.option("--rdap-url", envvar="NETIMMUNE_RDAP_URL", help="ask this RDAP server instead of the registry "
              "the IANA bootstrap names")
@config_option
@bulk_options
def send(category, ip, port, comment, observed, evidence_files, dry_run, as_json, root_url, root_key,
         config_path, bulk_file, state_file, batch_size, max_wait, no_fallback, rdap_url) -> None:
    """Report an abusive IP address to whoever runs its address space.

    \b
    First run:  report init --root-url URL --root-key KEY --org ORG --contact EMAIL
    Then:       report --open-proxy 198.51.100.7 < logfile
    Follow up:  report status REPORT_ID
    Exit codes: 0 delivered (or mailed to the RDAP abuse contact), 1 refused or unreachable, 3 no owner found.
    """
    if bulk_file is not None:
        if ip or category or dry_run:
            raise CommandError("with --bulk the CSV names every address and category: give no IP, category "
                               "or --dry-run")
        config = load_config(config_path)
        submitter = Submitter(Resolver(root_url or config.root_url, root_key or config.root_key))
        return send_bulk(submitter, config, bulk_file, state_file, batch_size, max_wait, as_json)
    if ip is None:
        raise CommandError("which address? give an IP, or --bulk FILE (see report --help)")
    config = None if dry_run and root_url and root_key else load_config(config_path)
    resolver = Resolver(root_url or config.root_url, root_key or config.root_key)
    try:
        parse_ip(ip)
    except AddressError as exc:
        raise CommandError(str(exc)) from None
    submitter = Submitter(resolver)
    if dry_run:
        return show_owner(submitter, ip, as_json)
    if category is None:
        raise CommandError("say what the address did, e.g. --open-proxy (see report --help for all categories)")
    try:
        when = parse_time(observed) if observed else datetime.now(timezone.utc)
        key = KeyPair.load(config.key_file)
        credentials = config.credentials()
    except (EncodingError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    report = build_report(by_slug(category), ip, config.reporter, when, evidence=read_evidence(evidence_files),
                          port=port, comment=comment)
    try:
        delivery = submitter.deliver(sign_envelope(report, key, credentials))
    except DeliveryError as exc:
        if exc.kind == "no_owner" and not no_fallback:
            fall_back_to_rdap(report, config, rdap_url, as_json, exc)
        fail(exc, as_json)
    remember(report["report_id"], ip, delivery.endpoint)
    if as_json:
        print_json({"report_id": report["report_id"], "endpoint": delivery.endpoint, "status": delivery.status,
                    "answer": delivery.answer, "hops": list(delivery.resolution.hops)})
    else:
        again = " (already received earlier)" if delivery.status == 200 else ""
        click.echo(f"reported {ip} ({category}) to {delivery.endpoint}{again}")
        click.echo(f"report id {report['report_id']}, status {delivery.answer.get('status')}, "
                   f"counted as {delivery.answer.get('rank', 'anonymous')}")
        if delivery.answer.get("credentials_ignored"):
            click.echo(f"warning: credentials not accepted: {delivery.answer['credentials_ignored']}", err=True)


def send_bulk(submitter: Submitter, config: ReporterConfig, csv_path: Path, state_path: Path | None,
              batch_size: int, max_wait: int, as_json: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    state_path = state_path or csv_path.with_name(csv_path.name + ".state.json")
    try:
        key = KeyPair.load(config.key_file)
        credentials = config.credentials()
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(csv_path.name, total=None)

        def show(done: int, total: int, phase: str) -> None:
            progress.update(task, completed=done, total=total, description=f"{phase} {csv_path.name}")

        importer = BulkImport(submitter, key, config.reporter, credentials, batch_size=batch_size,
                              max_wait=max_wait, on_progress=show)
        try:
            summary = importer.run(csv_path, state_path)
        except (BulkError, OSError) as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            raise CommandError(f"interrupted; run the same command again to resume from {state_path}") from None
    if as_json:
        print_json(summary.to_json())
    else:
        for line in summary.lines():
            click.echo(line)


def fall_back_to_rdap(report: dict, config: ReporterConfig, rdap_url: str | None, as_json: bool,
                      error: DeliveryError) -> None:
    """The owner is not on netimmune: mail its RIR-listed abuse contact an X-ARF report in an ARF email."""
    import httpx

    from ..client.rdap import RdapError, report_to_abuse_contact

    ip = report["source_identifier"]
    sender = config.reporter.get("contact") or "netimmune-reporter@localhost"
    try:
        fallback = report_to_abuse_contact(report, httpx.Client(timeout=10, follow_redirects=True), sender=sender,
                                           reporter_name=config.reporter.get("org") or None,
                                           smtp_host=config.smtp_host, smtp_port=config.smtp_port,
                                           outbox_dir=config_dir() / "outbox", base_url_override=rdap_url)
    except (RdapError, OSError) as exc:
        raise CommandError(f"{error.message}; asking its registry for an abuse contact failed too ({exc}); "
                           "try again later") from None
    if fallback is None:
        click.echo(f"{ip} is not on netimmune, and its registry lists no abuse contact for it", err=True)
        sys.exit(EXIT_NO_OWNER)
    where = fallback.destination
    sent = not where.endswith(".eml")
    if as_json:
        print_json({"report_id": report["report_id"], "on_netimmune": False, "abuse_contact": fallback.contact.email,
                    "network": fallback.contact.network, "registry": fallback.contact.server,
                    "sent": sent, "destination": where})
    else:
        click.echo(f"{ip} is not on netimmune: no report node holds its address space")
        click.echo(f"abuse contact (RDAP): {fallback.contact.email} — {fallback.contact.network or ''} "
                   f"{fallback.contact.range or ''}, via {fallback.contact.server}")
        click.echo(f"sent X-ARF report {report['report_id']} to {fallback.contact.email} through {where}" if sent
                   else f"wrote X-ARF report {report['report_id']} to {where} — send it to {fallback.contact.email}")
    sys.exit(0)


def fail(error: DeliveryError, as_json: bool):
    if as_json:
        print_json({"error": error.kind, "message": error.message, "status": error.status,
                    "retry_after": error.retry_after})
    else:
        click.echo(f"error: {error.message}", err=True)
    sys.exit(EXIT_NO_OWNER if error.kind == "no_owner" else 1)


def show_owner(submitter: Submitter, ip: str, as_json: bool) -> None:
    try:
        resolution = submitter.owner(ip)
    except DeliveryError as exc:
        if as_json and exc.resolution is not None:
            print_json(resolution_json(exc.resolution))
            sys.exit(EXIT_NO_OWNER)
        fail(exc, as_json)
    if as_json:
        print_json(resolution_json(resolution))
        return
    click.echo(f"{resolution.ip} is handled by {resolution.endpoint} (prefix {resolution.prefix})")
    click.echo("verified chain, root first:")
    for line in describe_chain(resolution.chain):
        click.echo(line)
    click.echo(f"asked: {' → '.join(resolution.hops)}")


@click.command(context_settings=CONTEXT)
@click.option("--root-url", required=True, help="the referral tree's root node")
@click.option("--root-key", required=True, help="the root's public key (ed25519:…), the trust anchor")
@click.option("--org", default="", help="your organisation, as owners will see it")
@click.option("--contact", default="", help="an address owners can answer")
@click.option("--domain", default="", help="your domain")
@click.option("--smtp", "smtp", help="HOST[:PORT] of a mail server for reports to owners not on netimmune "
              "(without it they are written as .eml files for you to send)")
@click.option("--credentials", "credentials_file", type=click.Path(exists=True, dir_okay=False),
              help="a chain + endorsement that gives your key a rank (from your NOC)")
@config_option
def init(root_url, root_key, org, contact, domain, smtp, credentials_file, config_path) -> None:
    """Create your reporter key and configuration."""
    path = config_path or config_dir() / "report.json"
    if path.exists():
        raise CommandError(f"{path} exists; edit it, or pass --config for another one")
    key_file = path.with_name("reporter.key")
    try:
        parse_public_key(root_key)
        key = KeyPair.load(key_file) if key_file.exists() else KeyPair.generate()
        if not key_file.exists():
            key.save(key_file)
        smtp_host, _, smtp_port = (smtp or "").partition(":")
        config = ReporterConfig(root_url.rstrip("/"), root_key, str(key_file),
                                {"org": org, "contact": contact, "domain": domain},
                                str(Path(credentials_file).resolve()) if credentials_file else None,
                                smtp_host or None, int(smtp_port or 25))
        config.save(path)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    click.echo(f"reporter key {key.public}")
    click.echo(f"configuration written to {path}")


@click.command(context_settings=CONTEXT)
@click.argument("report_id")
@click.option("--endpoint", help="the node the report went to (default: from the local log of sent reports)")
@click.option("--json", "as_json", is_flag=True)
def status(report_id, endpoint, as_json) -> None:
    """Ask the owner's node what became of a report you sent."""
    import httpx

    if endpoint is None:
        sent = [json.loads(line) for line in sent_log().read_text().splitlines()] if sent_log().exists() else []
        matches = [s for s in sent if s["report_id"] == report_id]
        if not matches:
            raise CommandError(f"no record of sending {report_id} from here; pass --endpoint URL")
        endpoint = matches[-1]["endpoint"]
    try:
        response = httpx.get(f"{endpoint}/v1/reports/{report_id}", timeout=10)
    except httpx.HTTPError as exc:
        raise CommandError(f"{endpoint} did not answer: {exc}") from None
    if response.status_code != 200:
        raise CommandError(f"{endpoint} answered {response.status_code}: {response.text[:200]}")
    body = response.json()
    if as_json:
        print_json(body)
    else:
        click.echo(f"{body['report_id']}: {body['ip']} ({body['category']}) is {body['status']} at {endpoint}")


SUBCOMMANDS = {"init": init, "status": status}


def main() -> None:
    """`report init` and `report status` are subcommands; anything else is a report to send."""
    argv = sys.argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        SUBCOMMANDS[argv[0]](args=argv[1:], prog_name=f"report {argv[0]}")
    send(args=argv, prog_name="report")


if __name__ == "__main__":
    main()
