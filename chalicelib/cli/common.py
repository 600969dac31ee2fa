"""What both commands share: turning refusals into a message and an exit code, JSON output."""
from __future__ import annotations

import functools
import json
import sys

import click

from ..core.errors import NodeError


class CommandError(click.ClickException):
    """A refusal a person can act on; printed as `error: …` with exit code 1."""

    def format_message(self) -> str:
        return self.message

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def refusals_to_exit(func):
    """Turn the refusals of core and protocol into CommandError, so no trace reaches a person."""
    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except NodeError as exc:
            raise CommandError(exc.message) from None
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
    return run


def print_json(doc) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
