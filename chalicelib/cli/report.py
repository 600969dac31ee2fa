"""`report`: find who runs an address through the referral tree and tell them."""
from __future__ import annotations

import os

import click

from ..client.resolver import Resolution, ResolutionError, Resolver
from ..protocol.delegation import parse_delegation
from ..protocol.prefixes import AddressError
from .common import CommandError, print_json

EXIT_NO_OWNER = 3


def resolution_json(resolution: Resolution) -> dict:
    return {"ip": resolution.ip, "answer": resolution.answer, "endpoint": resolution.endpoint,
            "prefix": resolution.prefix, "hops": list(resolution.hops),
            "referral": resolution.document, "chain": list(resolution.chain)}


def describe_chain(chain) -> list[str]:
    lines = []
    for index, document in enumerate(chain, 1):
        link = parse_delegation(document)
        lines.append(f"  {index}. {str(link.prefix):<24} issuer {link.issuer[:20]}… → holder {link.holder[:20]}…")
        lines.append(f"     endpoint {link.endpoint}, serial {link.serial}, "
                     f"valid until {document['delegation']['not_after']}")
    return lines


def resolve_or_exit(resolver: Resolver, ip: str) -> Resolution:
    try:
        return resolver.resolve(ip)
    except AddressError as exc:
        raise CommandError(str(exc)) from None
    except ResolutionError as exc:
        raise CommandError(f"could not find the owner of {ip}: {exc.message} "
                           f"(asked: {' → '.join(exc.hops)})") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ip")
@click.option("--dry-run", is_flag=True, help="only find and print the responsible node and its chain")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--root-url", envvar="NETIMMUNE_ROOT_URL", required=True, help="the referral tree's root")
@click.option("--root-key", envvar="NETIMMUNE_ROOT_KEY", required=True, help="the root's key (trust anchor)")
def report(ip, dry_run, as_json, root_url, root_key) -> None:
    """Report an abusive IP address to whoever runs its address space."""
    resolution = resolve_or_exit(Resolver(root_url, root_key), ip)
    if as_json:
        print_json(resolution_json(resolution))
    elif resolution.owned:
        click.echo(f"{resolution.ip} is handled by {resolution.endpoint} (prefix {resolution.prefix})")
        click.echo("verified chain, root first:")
        for line in describe_chain(resolution.chain):
            click.echo(line)
        click.echo(f"asked: {' → '.join(resolution.hops)}")
    else:
        click.echo(f"no owner of {resolution.ip} is registered on netimmune "
                   f"(asked: {' → '.join(resolution.hops)})", err=True)
    if not resolution.owned:
        raise SystemExit(EXIT_NO_OWNER)
    if not dry_run:
        raise CommandError("sending reports is not available yet; use --dry-run")


def main() -> None:
    report(prog_name=os.path.basename("report"))
