"""`report`: find who runs an address through the referral tree and tell them, signed.

    report --open-proxy 198.51.100.7 < squid-access.log
    report --bulk abuseipdb-bulk-report.csv
    report init --root-url URL --root-key KEY --org "Example" --contact abuse@example.net
    report status REPORT_ID
    report credentials FILE
"""
from __future__ import annotations

import json
import mimetypes
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import click

from ..client.bulk import BulkError, BulkImport, BulkIncomplete
from ..client.config import (ConfigError, ReporterConfig, check_base_url, check_root_key, config_dir, parse_smtp,
                             read_credentials)
from ..client.fetch import Fetcher, FetchError, json_object
from ..client.resolver import Resolution, Resolver
from ..client.submitter import DeliveryError, Submitter, refusal
from ..protocol.categories import CATEGORIES, by_slug
from ..protocol.delegation import parse_delegation
from ..protocol.encoding import EncodingError, parse_time
from ..protocol.endorsement import Standing, evaluate_credentials
from ..protocol.keys import KeyPair
from ..protocol.prefixes import AddressError, parse_ip
from ..protocol.report import MAX_EVIDENCE_BYTES, MAX_TEXT, Evidence, build_report, sign_envelope
from .common import CommandError, json_errors, print_json, printable, usage_error

EXIT_NO_OWNER = 3
CHOSEN_CATEGORY = "report.category"      # the slug of the category flag given, in click's context meta
CONTEXT = {"help_option_names": ["-h", "--help"]}


def config_option(func):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="reporter configuration; the log of sent reports (sent.jsonl) and the outbox folder "
                             "are kept beside it [default: $NETIMMUNE_CONFIG_DIR or ~/.config/netimmune"
                             "/report.json]")(func)


def config_file(path: Path | None) -> Path:
    """The configuration --config names, or the default one; what `report` keeps (sent.jsonl, outbox/) lives
    beside it, so each configuration has its own."""
    return path or config_dir() / "report.json"


def dev_option(func):
    return click.option("--dev", is_flag=True, envvar="NETIMMUNE_DEV_MODE",
                        help="dev mode: nodes and RDAP servers may be plain http and on loopback or private "
                             "addresses, for test trees [env NETIMMUNE_DEV_MODE; `report init --dev` keeps it]")(func)


def fetcher_for(config: ReporterConfig | None, dev: bool) -> Fetcher:
    """Plain http and special-purpose addresses only in dev mode: endpoints come from delegations, which a
    node holder signs as it likes, and must not reach the reporter's own network or a cloud's metadata."""
    return Fetcher(allow_local=dev or bool(config and config.dev_mode))


def load_config(path: Path | None) -> ReporterConfig:
    try:
        return ReporterConfig.load(config_file(path))
    except ConfigError as exc:
        raise CommandError(str(exc), code="config") from None


def checked_option(name: str, check, value):
    """An option's value through one of the configuration's checks; a refusal names the option."""
    try:
        return check(value)
    except ConfigError as exc:
        raise usage_error(f"{name}: {exc}") from None


def resolver_for(config: ReporterConfig | None, root_url: str | None, root_key: str | None, dev: bool) -> Resolver:
    """The configured root, unless --root-url or --root-key (or their variables) name another one."""
    url = checked_option("--root-url (or NETIMMUNE_ROOT_URL)", check_base_url, root_url) if root_url \
        else config.root_url
    key = checked_option("--root-key (or NETIMMUNE_ROOT_KEY)", check_root_key, root_key) if root_key \
        else config.root_key
    return Resolver(url, key, fetcher_for(config, dev))


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
    """Each file and stdin read only as far as the limit allows: a multi-gigabyte log is refused, not loaded."""
    items = []
    for path in files:
        try:
            with path.open("rb") as evidence:
                payload = evidence.read(MAX_EVIDENCE_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"cannot read evidence {path}: {exc}", code="evidence") from None
        kind = mimetypes.guess_type(path.name)[0] or ("text/plain" if path.suffix in (".log", ".txt", "") else
                                                        "application/octet-stream")
        items.append(Evidence(kind, payload, path.name))
        _refuse_too_much(items)
    if not sys.stdin.isatty():
        payload = sys.stdin.buffer.read(MAX_EVIDENCE_BYTES + 1)
        if payload:
            items.append(Evidence("text/plain", payload, "standard input"))
    _refuse_too_much(items)
    return tuple(items)


def _refuse_too_much(items: list[Evidence]) -> None:
    if sum(len(item.payload) for item in items) > MAX_EVIDENCE_BYTES:
        raise CommandError(f"evidence exceeds the limit of {MAX_EVIDENCE_BYTES:,} bytes (256 KiB) a report may "
                           "carry: pass the relevant lines only", code="evidence_too_large")


def sent_log(config: Path) -> Path:
    return config.with_name("sent.jsonl")


def remember(log: Path, report_id: str, ip: str, endpoint: str) -> None:
    """A local note of where each report went, so `report status` knows whom to ask. The report is delivered by
    then, and that is what counts: a note that cannot be written is a warning."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as lines:
            lines.write(json.dumps({"report_id": report_id, "ip": ip, "endpoint": endpoint}) + "\n")
    except OSError as exc:
        click.echo(f"warning: the report was delivered, but noting it in {log} failed ({exc}): `report status "
                   f"{report_id}` will need --endpoint {endpoint}", err=True)


def choose_category(ctx: click.Context, param: click.Parameter, given: bool) -> None:
    """Each category flag is an option of its own, so that a second one is seen and refused: sharing one
    destination, the last would silently win."""
    if not given:
        return
    flag = param.opts[0]
    if CHOSEN_CATEGORY in ctx.meta:
        raise click.UsageError(f"one category per report, not --{ctx.meta[CHOSEN_CATEGORY]} and {flag}", ctx)
    ctx.meta[CHOSEN_CATEGORY] = flag.removeprefix("--")


def category_flags(func):
    for category in reversed(list(CATEGORIES.values())):
        func = click.option(category.flag, is_flag=True, expose_value=False, help=category.title,
                            callback=choose_category)(func)
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
                     help="with --bulk: seconds to wait for one rate-limited owner before leaving its lines for a rerun"),
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
@dev_option
@config_option
@bulk_options
@json_errors
def send(ip, port, comment, observed, evidence_files, dry_run, as_json, root_url, root_key, dev,
         config_path, bulk_file, state_file, batch_size, max_wait, no_fallback, rdap_url) -> None:
    """Report an abusive IP address to whoever runs its address space.

    \b
    First run:  report init --root-url URL --root-key KEY --org ORG --contact EMAIL
    Then:       report --open-proxy 198.51.100.7 < logfile
    Follow up:  report status REPORT_ID
    A rank:     report credentials FILE   (what your NOC's `netimmune endorse` wrote for your key)
    Exit codes: 0 delivered (or mailed to the RDAP abuse contact), 1 refused or unreachable, 2 a mistake in
    the command line, 3 no owner found.

    With --json, a refusal (exit 1 or 3) is JSON on stdout too, beside the message on stderr: {"error":
    {"code": …, "message": …}}, with "status" and "retry_after" beside "error" when a node refused. So is a
    mistake in the command line found once the options are read (exit 2: a bad IP, a bad --time), but a
    mistake click finds while reading the options (an unknown option, a bad --port) is only the message on
    stderr.

    Evidence: each --evidence FILE, and stdin whenever it is not a terminal. A loop that reads addresses from
    a file must give each report its own stdin, or the first report takes the rest of the file as its
    evidence:

    \b
        while read ip; do report --port-scan "$ip" < /dev/null; done < ips.txt
    """
    category = click.get_current_context().meta.get(CHOSEN_CATEGORY)
    if bulk_file is not None:
        if ip or category or dry_run:
            raise usage_error("with --bulk the CSV names every address and category: give no IP, category "
                              "or --dry-run")
        config = load_config(config_path)
        submitter = Submitter(resolver_for(config, root_url, root_key, dev))
        return send_bulk(submitter, config, bulk_file, state_file, batch_size, max_wait, as_json)
    if ip is None:
        raise usage_error("which address? give an IP, or --bulk FILE (see report --help)")
    config = None if dry_run and root_url and root_key else load_config(config_path)
    resolver = resolver_for(config, root_url, root_key, dev)
    try:
        parse_ip(ip)
    except AddressError as exc:
        raise usage_error(str(exc), code="bad_ip") from None
    submitter = Submitter(resolver)
    if dry_run:
        return show_owner(submitter, ip, as_json)
    if category is None:
        raise usage_error("say what the address did, e.g. --open-proxy (see report --help for all categories)")
    if comment and len(comment) > MAX_TEXT:
        raise usage_error(f"--comment has {len(comment):,} characters; a report's comment may have at most "
                          f"{MAX_TEXT:,}", code="comment_too_long")
    try:
        when = parse_time(observed) if observed else datetime.now(timezone.utc)
    except EncodingError as exc:
        raise usage_error(f"--time: {exc}", code="bad_time") from None
    key, credentials = reporter_key(config)
    report = build_report(by_slug(category), ip, config.reporter, when, evidence=read_evidence(evidence_files),
                          port=port, comment=comment)
    try:
        delivery = submitter.deliver(sign_envelope(report, key, credentials))
    except DeliveryError as exc:
        if exc.kind == "no_owner" and not no_fallback:
            outbox = config_file(config_path).with_name("outbox")
            return fall_back_to_rdap(report, config, submitter.http, rdap_url, outbox, as_json, exc)
        raise delivery_failed(exc) from None
    remember(sent_log(config_file(config_path)), report["report_id"], ip, delivery.endpoint)
    if as_json:
        print_json({"report_id": report["report_id"], "endpoint": delivery.endpoint, "status": delivery.status,
                    "answer": delivery.answer, "hops": list(delivery.resolution.hops)})
    else:
        again = " (already received earlier)" if delivery.status == 200 else ""
        click.echo(printable(f"reported {ip} ({category}) to {delivery.endpoint}{again}"))
        click.echo(printable(f"report id {report['report_id']}, status {delivery.answer.get('status')}, "
                             f"rank by your credentials: {delivery.answer.get('rank', 'anonymous')}"))
        if delivery.answer.get("credentials_ignored"):
            click.echo(printable(f"warning: credentials not accepted: {delivery.answer['credentials_ignored']}"),
                       err=True)


def signing_key(config: ReporterConfig) -> KeyPair:
    try:
        return KeyPair.load(config.key_file)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc), code="config") from None


def reporter_key(config: ReporterConfig) -> tuple[KeyPair, list]:
    """The key that signs, and the credentials that give it a rank."""
    key = signing_key(config)
    try:
        return key, config.credentials()
    except ConfigError as exc:
        raise CommandError(str(exc), code="config") from None


def send_bulk(submitter: Submitter, config: ReporterConfig, csv_path: Path, state_path: Path | None,
              batch_size: int, max_wait: int, as_json: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    state_path = state_path or csv_path.with_name(csv_path.name + ".state.json")
    key, credentials = reporter_key(config)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(csv_path.name, total=None)

        def show(done: int, total: int, phase: str) -> None:
            progress.update(task, completed=done, total=total, description=f"{phase} {csv_path.name}")

        importer = BulkImport(submitter, key, config.reporter, credentials, batch_size=batch_size,
                              max_wait=max_wait, on_progress=show)
        incomplete: BulkIncomplete | None = None
        try:
            summary = importer.run(csv_path, state_path)
        except BulkIncomplete as exc:   # gone through, some lines left for a rerun: the summary, then exit 1
            summary, incomplete = exc.summary, exc
        except (BulkError, OSError) as exc:
            raise CommandError(printable(str(exc)), code="bulk_stopped") from None
        except KeyboardInterrupt:
            raise CommandError(f"interrupted; run the same command again to resume from {state_path}",
                               code="interrupted") from None
    if not as_json:
        for line in summary.lines():
            click.echo(printable(line))
    if incomplete is not None:
        raise CommandError(printable(str(incomplete)), code="bulk_incomplete", details=summary.to_json())
    if as_json:
        print_json(summary.to_json())


def fall_back_to_rdap(report: dict, config: ReporterConfig, http: Fetcher, rdap_url: str | None, outbox: Path,
                      as_json: bool, error: DeliveryError) -> None:
    """The owner is not on netimmune: mail its RIR-listed abuse contact an X-ARF report in an ARF email, or write
    it to `outbox` for the person to send."""
    from ..client.rdap import MailError, RdapError, report_to_abuse_contact

    ip = report["source_identifier"]
    sender = config.reporter.get("contact") or "netimmune-reporter@localhost"
    try:
        fallback = report_to_abuse_contact(report, http, sender=sender,
                                           reporter_name=config.reporter.get("org") or None,
                                           smtp_host=config.smtp_host, smtp_port=config.smtp_port,
                                           outbox_dir=outbox, base_url_override=rdap_url)
    except RdapError as exc:
        raise CommandError(printable(f"{error.message}; asking its registry for an abuse contact failed too ({exc}); "
                                     "try again later"), code="rdap_failed") from None
    except MailError as exc:
        raise CommandError(printable(f"{ip} is not on netimmune, and {exc}; the X-ARF report for {exc.recipient} is "
                                     f"kept in {exc.kept}: send that file yourself"),
                           code="smtp_failed", details={"destination": exc.kept}) from None
    except OSError as exc:
        raise CommandError(f"{ip} is not on netimmune, and writing its X-ARF report to {outbox} failed: {exc}",
                           code="outbox_failed") from None
    if fallback is None:
        raise CommandError(f"{ip} is not on netimmune, and its registry lists no abuse contact for it",
                           code="no_abuse_contact", exit_code=EXIT_NO_OWNER)
    where = fallback.destination
    sent = not where.endswith(".eml")
    if as_json:
        print_json({"report_id": report["report_id"], "on_netimmune": False, "abuse_contact": fallback.contact.email,
                    "network": fallback.contact.network, "registry": fallback.contact.server,
                    "sent": sent, "destination": where})
    else:
        contact = fallback.contact
        click.echo(f"{ip} is not on netimmune: no report node holds its address space")
        click.echo(printable(f"abuse contact (RDAP): {contact.email} — {contact.network or ''} "
                             f"{contact.range or ''}, via {contact.server}"))
        click.echo(printable(f"sent X-ARF report {report['report_id']} to {contact.email} through {where}" if sent
                             else f"wrote X-ARF report {report['report_id']} to {where} — send it to "
                                  f"{contact.email}"))


def delivery_failed(error: DeliveryError) -> CommandError:
    """With --json, the node's status and Retry-After go beside the error, when a node refused."""
    details = {"status": error.status, "retry_after": error.retry_after}
    return CommandError(printable(error.message), code=error.kind,
                        exit_code=EXIT_NO_OWNER if error.kind == "no_owner" else 1,
                        details={name: value for name, value in details.items() if value is not None})


def show_owner(submitter: Submitter, ip: str, as_json: bool) -> None:
    try:
        resolution = submitter.owner(ip)
    except DeliveryError as exc:
        refused = delivery_failed(exc)
        if exc.resolution is not None:   # what the tree answered (nobody): the finding of a dry run
            refused.details["resolution"] = resolution_json(exc.resolution)
        raise refused from None
    if as_json:
        print_json(resolution_json(resolution))
        return
    click.echo(printable(f"{resolution.ip} is handled by {resolution.endpoint} (prefix {resolution.prefix})"))
    click.echo("verified chain, root first:")
    for line in describe_chain(resolution.chain):   # endpoints are whatever their issuers signed
        click.echo(printable(line))
    click.echo(printable(f"asked: {' → '.join(resolution.hops)}"))


@click.command(context_settings=CONTEXT)
@click.option("--root-url", required=True, help="the referral tree's root node")
@click.option("--root-key", required=True, help="the root's public key (ed25519:…), the trust anchor")
@click.option("--org", default="", help="your organisation, as owners will see it")
@click.option("--contact", default="", help="an address owners can answer")
@click.option("--domain", default="", help="your domain")
@click.option("--smtp", "smtp", help="HOST[:PORT] of a mail server for reports to owners not on netimmune "
              "(without it they are written as .eml files for you to send)")
@click.option("--credentials", "credentials_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the credentials that give your key a rank, from your NOC's `netimmune endorse` (your key must "
                   "exist already: otherwise use `report credentials FILE` once init has made it)")
@click.option("--dev", is_flag=True, help="dev mode, kept in the configuration: nodes and RDAP servers may be "
              "plain http and on loopback or private addresses, for test trees")
@config_option
def init(root_url, root_key, org, contact, domain, smtp, credentials_file, dev, config_path) -> None:
    """Create your reporter key and configuration."""
    path = config_file(config_path)
    if path.exists():
        raise CommandError(f"{path} exists; edit it, or pass --config for another one")
    key_file = path.with_name("reporter.key")
    smtp_host, smtp_port = checked_option("--smtp", parse_smtp, smtp) if smtp else (None, 25)
    root_url = checked_option("--root-url", check_base_url, root_url)
    try:
        Fetcher(allow_local=dev).check_endpoint(root_url)
    except FetchError as exc:
        raise usage_error(f"--root-url: {exc.message}") from None
    try:
        config = ReporterConfig(root_url, checked_option("--root-key", check_root_key, root_key), str(key_file),
                                {"org": org, "contact": contact, "domain": domain},
                                str(credentials_file.resolve()) if credentials_file else None,
                                smtp_host, smtp_port, dev)
        key = KeyPair.load(key_file) if key_file.exists() else None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    standing = checked_credentials(credentials_file, key, config.root_key, "--credentials: ") \
        if credentials_file else None
    if key is None:    # written only once everything above is known to be right
        key = KeyPair.generate()
        key.save(key_file)
    config.save(path)
    click.echo(f"reporter key {key.public}")
    if standing:
        click.echo(printable(describe_standing(standing)))
    click.echo(f"configuration written to {path}")


def checked_credentials(path: Path, key: KeyPair | None, root_key: str, source: str = "") -> Standing:
    """The standing a credentials file gives key under the configured root, as a node will weigh it; a file that
    is not credentials, or gives key no rank, is refused now rather than warned about on every report."""
    try:
        credentials = read_credentials(path)
    except ConfigError as exc:
        raise usage_error(f"{source}{exc}", code="bad_credentials") from None
    if key is None:
        raise usage_error(f"{source}an endorsement names the key it endorses, and yours is made by this `report "
                          "init`: run it without --credentials, have the key it prints endorsed, then run "
                          "`report credentials FILE`", code="bad_credentials")
    standing = evaluate_credentials(credentials, key.public, root_key, datetime.now(timezone.utc))
    if standing.problem:
        raise usage_error(f"{source}{path} gives {key.public} no rank: {standing.problem}", code="bad_credentials")
    return standing


def describe_standing(standing: Standing) -> str:
    return f"credentials: rank {standing.rank} ({standing.org}), endorsed by {standing.endorsed_by}"


@click.command(context_settings=CONTEXT)
@click.argument("credentials_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
def use_credentials(credentials_file, config_path) -> None:
    """Sign your reports with the rank your NOC endorsed your key with: check FILE (what `netimmune endorse`
    wrote for your key) and send it with every report from now on."""
    path = config_file(config_path)
    config = load_config(path)
    standing = checked_credentials(credentials_file, signing_key(config), config.root_key)
    config.credentials_file = str(credentials_file.resolve())
    config.save(path)
    click.echo(printable(describe_standing(standing)))
    click.echo(f"configuration written to {path}")


@click.command(context_settings=CONTEXT)
@click.argument("report_id")
@click.option("--endpoint", help="the node the report went to (default: from the local log of sent reports)")
@click.option("--json", "as_json", is_flag=True)
@dev_option
@config_option
@json_errors
def status(report_id, endpoint, as_json, dev, config_path) -> None:
    """Ask the owner's node what became of a report you sent."""
    try:
        report_id = str(uuid.UUID(report_id))
    except ValueError:
        raise usage_error(f"{report_id!r} is not a report id (a UUID, as `report` printed it)",
                          code="bad_report_id") from None
    path = config_file(config_path)
    endpoint = checked_option("--endpoint", check_base_url, endpoint) if endpoint \
        else sent_to(sent_log(path), report_id)
    config = load_config(path) if path.exists() else None
    try:
        response = fetcher_for(config, dev).get(f"{endpoint}/v1/reports/{report_id}")
    except FetchError as exc:
        raise CommandError(printable(exc.message), code=exc.kind) from None
    if response.status_code != 200:
        code, message = refusal(response)
        raise CommandError(printable(f"{endpoint} answered {response.status_code}: {message}"), code=code,
                           details={"status": response.status_code})
    body = json_object(response)
    if body is None or not all(isinstance(body.get(name), str) for name in ("report_id", "ip", "category", "status")):
        raise CommandError(f"{endpoint} answered without the report's status; is it a netimmune node?",
                           code="bad_answer")
    if as_json:
        print_json(body)
    else:
        click.echo(printable(f"{body['report_id']}: {body['ip']} ({body['category']}) is {body['status']} at "
                             f"{endpoint}"))


def sent_to(log: Path, report_id: str) -> str:
    """Where the local log says the report went; a damaged line is skipped, as the log is only a convenience."""
    endpoint = None
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("report_id") == report_id:
            endpoint = entry.get("endpoint")
    if not isinstance(endpoint, str):
        raise CommandError(f"no record of sending {report_id} from here; pass --endpoint URL", code="unknown_report")
    return endpoint


SUBCOMMANDS = {"init": init, "status": status, "credentials": use_credentials}


def main() -> None:
    """`report init`, `report status` and `report credentials` are subcommands; anything else is a report to send."""
    argv = sys.argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        SUBCOMMANDS[argv[0]](args=argv[1:], prog_name=f"report {argv[0]}")
    send(args=argv, prog_name="report")


if __name__ == "__main__":
    main()
