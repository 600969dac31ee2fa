"""`netimmune`: run and administer a node (keys, serve, delegate, token, policy)."""
from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from ..core import delegations
from ..core.tally import RANKS
from ..core.tokens import ROLES, create_token, list_tokens, revoke_token, token_id
from ..protocol.delegation import ip_literal, plain_endpoint, refused_address
from ..protocol.encoding import format_time
from ..protocol.endorsement import ENDORSED_RANKS
from ..protocol.keys import KeyPair, parse_public_key
from ..settings import LOCAL_HOST, LOCAL_PORT, Settings, SettingsError, env_setting
from .common import CommandError, print_json, refusals_to_exit, usage_error


KEY_OPTIONS = (
    click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
                 help="SQLite database of the node [env NETIMMUNE_DB; default netimmune.db]"),
    click.option("--key", "--out", "key_file", type=click.Path(dir_okay=False, path_type=Path),
                 help="node key file [env NETIMMUNE_KEY_FILE; default: the db path with .key]"),
)


def key_options(func):
    """Where the node's key is: the key commands need nothing else."""
    for option in reversed(KEY_OPTIONS):
        func = option(func)
    return func


def node_options(func, endpoint_default: str = f"http://{LOCAL_HOST}:{LOCAL_PORT}, where serve listens by default"):
    """The options that locate a node and its trust anchor; each falls back to NETIMMUNE_* variables."""
    options = [
        *KEY_OPTIONS,
        click.option("--anchor", "trust_anchor", help="root key (ed25519:…); omit on the root itself "
                     "[env NETIMMUNE_TRUST_ANCHOR]"),
        click.option("--endpoint", help="public base URL of this node, which open-proxy canaries and alerts name "
                     f"[env NETIMMUNE_ENDPOINT; default: {endpoint_default}]"),
        click.option("--dev", "dev_mode", is_flag=True, default=None,
                     help="allow special-purpose space such as loopback [env NETIMMUNE_DEV_MODE]"),
        click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="policy YAML [env NETIMMUNE_POLICY; default: the built-in policy]"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


CHECKED_OPTIONS = (("--anchor", "trust_anchor", parse_public_key), ("--endpoint", "endpoint", plain_endpoint))


def settings_from(options: dict, **overrides) -> Settings:
    """The NETIMMUNE_* settings under the options given. A malformed value is a usage error naming the option
    or the variable it came from: Settings, checking it again, could name only the variable."""
    for option, name, check in CHECKED_OPTIONS:
        if options.get(name):
            try:
                check(options[name])
            except ValueError as exc:
                raise usage_error(f"{option}: {exc}") from None
    keys = ("db_path", "key_file", "trust_anchor", "endpoint", "dev_mode", "policy_path")
    try:
        return Settings.from_env().with_overrides(**{k: options.pop(k, None) for k in keys}, **overrides)
    except SettingsError as exc:
        raise usage_error(str(exc)) from None


def node_settings(options: dict, creates_database: bool = False, **overrides) -> Settings:
    """The settings of the node the options name. Only the commands that run a node (serve, worker) may create its
    SQLite database: for any other, a missing one is a mistyped --db, not a new node."""
    settings = settings_from(options, **overrides)
    if settings.store == "sqlite" and not creates_database and not settings.db_path.exists():
        raise CommandError(f"no node database at {settings.db_path}; check --db (or NETIMMUNE_DB), or run "
                           "`netimmune serve` once to create the node")
    if creates_database:
        refuse_unreachable_endpoint(settings)
    return settings


def refuse_unreachable_endpoint(settings: Settings) -> None:
    """A production node's checks probe global addresses only, and an open proxy there is confirmed only when it
    fetches the canary from the endpoint: a special-purpose one (the loopback default among them) refutes every
    true report. A host name is the operator's word."""
    host = urlsplit(settings.endpoint).hostname or ""
    address = None if settings.dev_mode else ip_literal(host)
    reserved = address and refused_address(address, allow_local=False)
    if reserved:
        raise usage_error(f"this node's endpoint {settings.endpoint} is special-purpose space ({reserved}), which "
                          "the hosts it checks cannot reach: give its public URL with --endpoint (or "
                          "NETIMMUNE_ENDPOINT), or run a test tree with --dev")


def build_from(settings: Settings):
    """Wiring, and every adapter with it (boto3 among them), is imported only by the commands that build a node,
    so `--help` and `keys` start at once."""
    from ..wiring import build_node

    try:
        return build_node(settings)
    except sqlite3.Error as exc:
        raise CommandError(f"{settings.db_path} is not a usable node database: {exc}") from None


def node_from(options: dict, creates_database: bool = False, **overrides):
    """The node the options name (see node_settings)."""
    return build_from(node_settings(options, creates_database, **overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run and administer a netimmune report node."""


@main.group()
def keys() -> None:
    """Node keys."""


@keys.command("new")
@key_options
@refusals_to_exit
def keys_new(**options) -> None:
    """Create an Ed25519 key (mode 0600) and print its public form."""
    path = settings_from(options).key_path
    key = KeyPair.generate()
    key.save(path)
    click.echo(key.public)
    click.echo(f"saved to {path}", err=True)


@keys.command("show")
@key_options
@refusals_to_exit
def keys_show(**options) -> None:
    """Print the node's public key."""
    click.echo(KeyPair.load(settings_from(options).key_path).public)


@main.command()
@functools.partial(node_options, endpoint_default="http://HOST:PORT, where it listens; required with a wildcard "
                   "--host such as 0.0.0.0 or ::")
@click.option("--host", default=LOCAL_HOST, show_default=True)
@click.option("--port", default=LOCAL_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--worker/--no-worker", "with_worker", default=True, show_default=True,
              help="also run queued jobs (verification scans, alerts) in this process")
@refusals_to_exit
def serve(host, port, threads, with_worker, **options) -> None:
    """Serve the node API with waitress (a production WSGI server).

    Behind a reverse proxy, give the URL it answers at as --endpoint: an open proxy is confirmed only when it
    fetches the canary from there."""
    from waitress import create_server

    import app as node_app

    from ..adapters.wsgi import MAX_BODY, ChaliceWSGI

    if not (options["endpoint"] or env_setting("ENDPOINT")):
        options["endpoint"] = listening_url(host, port)
    settings = node_settings(options, creates_database=True, trust_peer_header=True)
    # Listening before the database is created, so a port in use leaves no new node behind. waitress would
    # otherwise buffer a body of up to 1 GiB before the adapter refuses it.
    server = create_server(ChaliceWSGI(node_app.app), host=host, port=port, threads=threads,
                           ident="netimmune", clear_untrusted_proxy_headers=True, max_request_body_size=MAX_BODY)
    try:
        node = build_from(settings)
        if node.is_root:   # it would answer as the root and judge reporters' credentials by its own key
            delegations.refuse_unanchored(node)
    except Exception:
        server.close()
        raise
    node_app.current.set(node)
    # waitress warns "Task queue depth is N" on every request while all threads are busy: under load that
    # logging alone costs more than a referral
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    thread, stop = local_worker(node).start_thread() if with_worker else (None, None)
    mode = "dev mode: special-purpose space allowed" if node.settings.dev_mode else "production mode"
    click.echo(f"netimmune node {node.key.public} listening on {host} port {port} as {node.settings.endpoint} "
               f"({mode})", err=True)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    try:
        server.run()
    except (KeyboardInterrupt, OSError):
        pass
    finally:
        if stop is not None:
            stop.set()
            thread.join(timeout=30)


def listening_url(host: str, port: int) -> str:
    """The endpoint of a node given none: where it listens. A wildcard address names no one address that others
    reach it at, and loopback in its place would send every remote open proxy's canary request to the proxy's
    own machine, refuting the true reports about it; so there the operator must say."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"   # a host name
    if address.is_unspecified:
        raise usage_error(f"--host {host} listens on every address, so this node cannot tell which one others reach "
                          "it at: give its public URL with --endpoint (or NETIMMUNE_ENDPOINT)")
    if getattr(address, "scope_id", None):
        raise usage_error(f"--host {host} is an address on one link only, which no endpoint can name: give this "
                          "node's public URL with --endpoint (or NETIMMUNE_ENDPOINT)")
    return f"http://{f'[{host}]' if address.version == 6 else host}:{port}"


def local_worker(node, lease_seconds: int = 300):
    """The worker that hands queued jobs to the same SQS handler Lambda calls."""
    import app as node_app

    from ..adapters.local_worker import Worker

    return Worker(node.queue, node_app.verify_worker, node.clock, lease_seconds=lease_seconds)


@main.command()
@node_options
@click.option("--once", is_flag=True, help="handle the jobs that are due, then exit")
@click.option("--lease-seconds", default=300, show_default=True, type=click.IntRange(1, 43200),
              help="how long a job stays with this worker before another may take it over")
@refusals_to_exit
def worker(once, lease_seconds, **options) -> None:
    """Run queued jobs (verification scans, alerts, webhooks) without serving HTTP.

    Give it the --endpoint of the `serve` it works beside: its canaries and alerts name that URL."""
    import threading

    import app as node_app

    node = node_from(options, creates_database=True)
    node_app.current.set(node)
    runner = local_worker(node, lease_seconds)
    if once:
        click.echo(f"handled {runner.run_once()} job(s)")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        runner.run(stop)
    except KeyboardInterrupt:
        stop.set()


@main.group()
def delegate() -> None:
    """Grant, revoke, list and install delegations."""


@delegate.command("grant")
@click.argument("prefix")
@click.option("--holder", required=True, help="the child's public key (ed25519:…)")
@click.option("--to", "child_endpoint", required=True, help="the child node's base URL")
@click.option("--days", type=click.IntRange(1, 3660), help="validity (default NETIMMUNE_GRANT_DAYS or 365)")
@node_options
@refusals_to_exit
def delegate_grant(prefix, holder, child_endpoint, days, **options) -> None:
    """Sign a delegation of PREFIX to a child and print the chain (give it to the child)."""
    chain = delegations.grant(node_from(options), prefix, holder, child_endpoint, days)
    print_json({"delegation": chain[-1], "chain": chain})


@delegate.command("revoke")
@click.argument("prefix")
@node_options
@refusals_to_exit
def delegate_revoke(prefix, **options) -> None:
    """Stop referring PREFIX to the child it was granted to."""
    delegations.revoke(node_from(options), prefix)
    click.echo(f"revoked {prefix}")


@delegate.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON with the signed documents")
@node_options
@refusals_to_exit
def delegate_list(as_json, **options) -> None:
    """Delegations this node holds and has granted."""
    listing = delegations.list_delegations(node_from(options))
    if as_json:
        print_json(listing)
        return
    for role, items in listing.items():
        for item in items:
            click.echo(f"{role:8} {item['prefix']:<43} {item['endpoint']:<40} serial {item['serial']:<5} "
                       f"until {item['not_after']}  {item['holder']}")


@delegate.command("install")
@click.argument("source", type=click.File("r"))
@node_options
@refusals_to_exit
def delegate_install(source, **options) -> None:
    """Install the chain a parent granted this node (the JSON `delegate grant` printed; - for stdin)."""
    try:
        document = json.load(source)
    except ValueError as exc:
        raise CommandError(f"{source.name} is not JSON: {exc}") from None
    leaf = delegations.install(node_from(options), document)
    click.echo(f"installed {leaf.prefix} (serial {leaf.serial}, until "
               f"{leaf.document['delegation']['not_after']})")


@main.group()
def token() -> None:
    """API tokens for operators and appliances."""


@token.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--label", default="", help="who or what the token is for")
@node_options
@refusals_to_exit
def token_create(role, label, **options) -> None:
    """Create a token; it is shown once and stored only as a hash (its id, on stderr, is what revoke takes)."""
    node = node_from(options)
    token = create_token(node.tokens, role, label, node.clock.now())
    click.echo(token)
    click.echo(f"token id {token_id(token)}: `netimmune token revoke {token_id(token)}` withdraws it", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@node_options
@refusals_to_exit
def token_list(as_json, **options) -> None:
    """Tokens by id, role, creation time and label, oldest first; the tokens themselves are not stored."""
    listed = list_tokens(node_from(options).tokens)
    if as_json:
        print_json(listed)
        return
    for item in listed:
        click.echo(f"{item['id']}  {item['role']:<9} {item['created']}  {item['label']}")


@token.command("revoke")
@click.argument("token_id")
@node_options
@refusals_to_exit
def token_revoke(token_id, **options) -> None:
    """Withdraw a token at once, by the id `token list` shows (or by the token itself)."""
    revoked = revoke_token(node_from(options).tokens, token_id)
    click.echo(f"revoked {revoked['id']} ({', '.join(filter(None, (revoked['role'], revoked['label'])))})")


@main.group()
def reporter() -> None:
    """How much this node trusts a reporter key."""


@reporter.command("rank")
@click.argument("key")
@click.argument("rank", type=click.Choice([*RANKS, "default"]))
@node_options
@refusals_to_exit
def reporter_rank(key, rank, **options) -> None:
    """Set KEY's rank on this node (noc, trusted, anonymous, muted), or `default` to follow its credentials."""
    parse_public_key(key)
    node_from(options).reports.set_rank_override(key, None if rank == "default" else rank)
    click.echo(f"{key}: {rank}")


@main.command()
@click.argument("reporter_key")
@click.option("--rank", required=True, type=click.Choice(ENDORSED_RANKS), help="the rank the key speaks with")
@click.option("--org", required=True, help="the organisation the reporter speaks for, signed into the endorsement")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3660),
              help="validity; never past the end of this node's own delegation (nothing revokes it before)")
@node_options
@refusals_to_exit
def endorse(reporter_key, rank, org, days, **options) -> None:
    """Lend this node's rank to REPORTER_KEY: print credentials (this node's chain and a signed endorsement) for
    the reporter's `report init --credentials FILE` or `report credentials FILE`."""
    from ..core.endorsements import endorse as endorse_key

    credentials = endorse_key(node_from(options), reporter_key, org, rank, days)
    print_json({"credentials": credentials})
    click.echo(f"endorsed {reporter_key} as {rank} for {org} until "
               f"{credentials[-1]['endorsement']['not_after']}", err=True)


@main.group()
def webhooks() -> None:
    """Webhook deliveries."""


@webhooks.command("log")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True)
@node_options
@refusals_to_exit
def webhooks_log(limit, as_json, **options) -> None:
    """The latest delivery attempts, newest first."""
    entries = node_from(options).verifications.deliveries(limit)
    if as_json:
        print_json([{**entry, "at": format_time(entry["at"])} for entry in entries])
        return
    for entry in entries:
        outcome = entry["error"] or f"HTTP {entry['status']}"
        click.echo(f"{format_time(entry['at'])}  {entry['webhook']:<16} {outcome:<28} {entry['delivery_id']}  "
                   f"{entry['url']}")


@main.group()
def queue() -> None:
    """The local job queue (verification scans, alerts, webhooks)."""


@queue.command("status")
@node_options
@refusals_to_exit
def queue_status(**options) -> None:
    """Jobs by state, and the dead letters with their last error."""
    jobs = node_from(options).queue
    click.echo("  ".join(f"{state} {count}" for state, count in jobs.counts().items()))
    for dead in jobs.dead_letters():
        click.echo(f"dead {dead.job.job_id} {dead.job.kind} after {dead.job.attempts} tries: {dead.error}")


@main.group()
def case() -> None:
    """Cases this node holds."""


@case.command("list")
@click.option("--status", help="only cases in this status (received, verifying, confirmed, …)")
@click.option("--json", "as_json", is_flag=True, help="the cases as GET /v1/cases answers them")
@node_options
@refusals_to_exit
def case_list(status, as_json, **options) -> None:
    """The newest cases first, with their weighted scores (GET /v1/cases)."""
    from ..core.cases import list_cases

    listed = list_cases(node_from(options), status)
    if as_json:
        print_json(listed)
        return
    for c in listed:
        click.echo(f"{c['ip']:<39} {c['category']:<16} {c['status']:<12} score {c['score']:>7.2f}  "
                   f"{c['reports']} report{'s' * (c['reports'] != 1)}, last {c['last_seen']}")


@case.command("show")
@click.argument("ip")
@node_options
@refusals_to_exit
def case_show(ip, **options) -> None:
    """Every case of one address with its reporters, verification and evidence, as JSON (GET /v1/cases/{ip})."""
    from ..core.cases import cases_for

    print_json(cases_for(node_from(options), ip))


@case.command("resolve")
@click.argument("ip")
@click.argument("category")
@node_options
@refusals_to_exit
def case_resolve(ip, category, **options) -> None:
    """Mark a case dealt with: it lifts the case's block; a newer report opens it again."""
    from ..core.cases import resolve

    resolved = resolve(node_from(options), ip, category)
    click.echo(f"resolved {resolved['ip']} {resolved['category']}")


@case.command("export")
@click.argument("ip")
@click.option("--category", help="only this category (default: every case of the address)")
@click.option("--org", help="your organisation, as the X-ARF sender (default: the first reporter)")
@click.option("--contact", help="your abuse contact address, as the X-ARF sender")
@node_options
@refusals_to_exit
def case_export(ip, category, org, contact, **options) -> None:
    """Print a case as X-ARF v4 JSON, to pass on to tools that speak X-ARF (an array for several)."""
    from ..core.cases import cases_for
    from ..protocol.xarf import export_case

    sender = {"org": org or "", "contact": contact or "", "domain": (contact or "@").split("@")[-1]} \
        if org or contact else None
    found = [c for c in cases_for(node_from(options), ip) if category in (None, c["category"])]
    if not found:
        raise CommandError(f"no {category} case for {ip}")
    documents = [export_case(c, [r["report"] for r in c["evidence_reports"]], sender=sender) for c in found]
    print_json(documents[0] if len(documents) == 1 else documents)


@main.command()
def demo() -> None:
    """Run the whole story on loopback: referral, signed reports, verification, block, alert."""
    from .demo import run_demo

    try:
        run_demo()
    except RuntimeError as exc:
        raise CommandError(f"the demo failed: {exc}") from None


@main.group()
def policy() -> None:
    """Per-prefix policy files."""


@policy.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def policy_check(path) -> None:
    """Validate a policy file; print every problem as FILE:LINE:COL: message."""
    from ..core.policy import PolicyError, load_policy
    from ..wiring import unset_webhook_secrets

    try:
        loaded = load_policy(path)
    except PolicyError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    rules = len(loaded.rules) - 1  # the last rule is the file's defaults, which cover every other address
    click.echo(f"{path}: ok ({rules} rule{'s' * (rules != 1)} and the defaults, {len(loaded.webhooks)} webhook"
               f"{'s' * (len(loaded.webhooks) != 1)})")
    for warning in unset_webhook_secrets(loaded, os.environ):
        click.echo(f"warning: {warning} (in this environment)", err=True)


if __name__ == "__main__":
    main()
