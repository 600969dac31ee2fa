"""What both commands share: turning refusals into a message and an exit code, JSON output."""
from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys

import click

from ..core.errors import NodeError


class CommandError(click.ClickException):
    """A refusal a person can act on; printed as `error: …` with exit code 1 (or `exit_code`).

    `code` names it for scripts, and `details` adds fields to its JSON form (see json_errors)."""

    def __init__(self, message: str, *, code: str = "error", exit_code: int = 1, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code
        self.details = details or {}

    def format_message(self) -> str:
        return self.message

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def printable(text: str) -> str:
    """Text from the network (a node's error, an RDAP record, a mail server's reply) as a terminal should show it:
    a control character appears escaped, as Python writes it, so a CR LF cannot forge a line of output nor an
    escape sequence rewrite the screen."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def usage_error(message: str, code: str = "usage") -> CommandError:
    """A mistake in the command line itself: exit code 2, as click gives for its own."""
    return CommandError(message, code=code, exit_code=2)


def refusals_to_exit(func):
    """Turn the refusals of core and protocol into CommandError, so no trace reaches a person."""
    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        except NodeError as exc:
            raise CommandError(exc.message) from None
        except sqlite3.Error as exc:
            raise CommandError(f"the node database failed: {exc}") from None
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
    return run


def json_errors(func):
    """With --json a refusal is also printed on stdout as {"error": {"code", "message"}}, so a script that
    reads stdout always gets JSON; the exit code and the line on stderr stay as they are."""
    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except click.ClickException as exc:
            if kwargs.get("as_json"):
                code = getattr(exc, "code", "usage")
                print_json({"error": {"code": code, "message": exc.format_message()},
                            **getattr(exc, "details", {})})
            raise
    return run


def print_json(doc) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()  # as click.echo does: a closed pipe is then seen while the command runs, not at exit
