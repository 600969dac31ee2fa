"""The Chalice app in process, through chalice.test.Client, on a node built by the wiring function."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from chalice.test import Client

import app as node_app
from chalicelib.core.tokens import create_token
from chalicelib.protocol.keys import KeyPair
from chalicelib.settings import Settings
from chalicelib.wiring import build_node
from tests.conftest import NOW, FixedClock


@dataclass
class Api:
    client: Client
    node: object

    def call(self, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        response = self.client.http.request(method, path, headers=headers, body=payload)
        return response.status_code, json.loads(response.body) if response.body else None

    def token(self, role: str) -> str:
        return create_token(self.node.tokens, role, "test", NOW)


def make_api(tmp_path, name: str = "node", **settings) -> Api:
    KeyPair.generate().save(tmp_path / f"{name}.key")
    node = build_node(Settings(db_path=tmp_path / f"{name}.db", endpoint="http://127.0.0.1:9", **settings),
                      clock=FixedClock())
    node_app.current.set(node)
    return Api(Client(node_app.app), node)


@pytest.fixture
def api(tmp_path):
    """A root node in dev mode."""
    made = make_api(tmp_path, dev_mode=True)
    with made.client:
        yield made
