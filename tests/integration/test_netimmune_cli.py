"""The operator's command line, run in process with click's runner against a node database."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from chalicelib.cli.netimmune import main
from chalicelib.protocol.keys import KeyPair


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("NETIMMUNE_DB", str(tmp_path / "node.db"))
    monkeypatch.setenv("NETIMMUNE_DEV_MODE", "1")
    runner = CliRunner()

    def invoke(*args, ok=True):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    invoke("keys", "new")
    invoke("worker", "--once")   # the node's first start creates its database, as `serve` does
    return invoke


def test_keys_show_prints_the_key_keys_new_made(run):
    assert run("keys", "show").startswith("ed25519:")


def test_grant_list_and_revoke_on_a_root(run):
    child = KeyPair.generate().public
    granted = json.loads(run("delegate", "grant", "127.0.0.0/8", "--holder", child, "--to", "http://127.0.0.2:8080"))
    assert granted["chain"][-1] == granted["delegation"]
    assert "127.0.0.0/8" in run("delegate", "list")
    assert json.loads(run("delegate", "list", "--json"))["granted"][0]["holder"] == child
    assert "revoked 127.0.0.0/8" in run("delegate", "revoke", "127.0.0.0/8")
    assert "no delegation granted" in run("delegate", "revoke", "127.0.0.0/8", ok=False)


def test_refusals_are_one_clear_line_not_a_trace(run):
    output = run("delegate", "grant", "127.0.0.1/8", "--holder", KeyPair.generate().public, "--to",
                 "http://127.0.0.2", ok=False)
    assert output.startswith("error: ") and "Traceback" not in output


def test_reporter_rank_sets_and_clears_an_override(run):
    key = KeyPair.generate().public
    assert run("reporter", "rank", key, "muted").strip() == f"{key}: muted"
    assert run("reporter", "rank", key, "default").strip() == f"{key}: default"
    assert "error" in run("reporter", "rank", "ed25519:nope", "noc", ok=False)


def test_policy_check_prints_line_precise_problems_and_fails(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - prefix: 127.0.0.1/8\n    checks: [open-prxy]\n")
    output = run("policy", "check", str(bad), ok=False)
    assert f"{bad}:2:" in output and f"{bad}:3:" in output


EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


def test_policy_check_counts_the_rules_apart_from_the_defaults(run, monkeypatch):
    monkeypatch.setenv("ACME_NOC_WEBHOOK_SECRET", "s3cret")
    assert run("policy", "check", str(EXAMPLE_POLICY)).strip() == \
        f"{EXAMPLE_POLICY}: ok (4 rules and the defaults, 1 webhook)"


def test_policy_check_warns_of_a_webhook_whose_secret_variable_is_unset(run, monkeypatch):
    monkeypatch.delenv("ACME_NOC_WEBHOOK_SECRET", raising=False)
    output = run("policy", "check", str(EXAMPLE_POLICY))
    assert "ok (4 rules" in output
    assert "warning: webhook acme-noc: its secret variable ACME_NOC_WEBHOOK_SECRET is not set" in output


def test_token_queue_and_webhook_log_commands_answer(run):
    assert run("token", "create", "--role", "appliance").startswith("nim_appliance_")
    assert run("queue", "status").startswith("pending 0")
    assert run("webhooks", "log") == ""


def spam_case_at(tmp_path, root_key) -> None:
    """A node holding 127.0.0.0/16 in the run fixture's database, with one spam report about 127.0.0.5."""
    from chalicelib.core import intake
    from chalicelib.core.delegations import install
    from chalicelib.protocol.categories import by_slug
    from chalicelib.protocol.report import Evidence, build_report, sign_envelope
    from chalicelib.settings import Settings
    from chalicelib.wiring import build_node
    from tests.conftest import delegate

    node = build_node(Settings(db_path=tmp_path / "node.db", dev_mode=True, trust_anchor=root_key.public))
    install(node, [delegate(root_key, "127.0.0.0/16", node.key).document])
    body = build_report(by_slug("spam"), "127.0.0.5", {"org": "Example CERT", "contact": "cert@example.net",
                                                       "domain": "example.net"}, node.clock.now(),
                        evidence=(Evidence("message/rfc822", b"Subject: buy now\n\nspam"),))
    assert intake.submit(node, [sign_envelope(body, KeyPair.generate())])[0].status == 202


def test_case_list_show_and_resolve_read_and_close_cases_without_the_http_api(run, tmp_path, root_key):
    spam_case_at(tmp_path, root_key)
    anchor = ("--anchor", root_key.public)
    assert run("case", "list", *anchor).startswith("127.0.0.5")
    assert "spam" in run("case", "list", *anchor) and "received" in run("case", "list", *anchor)
    listed = json.loads(run("case", "list", "--json", "--status", "received", *anchor))
    assert [(c["ip"], c["category"], c["reports"]) for c in listed] == [("127.0.0.5", "spam", 1)]
    shown = json.loads(run("case", "show", "127.0.0.5", *anchor))
    assert shown[0]["evidence_reports"][0]["report"]["evidence"][0]["content_type"] == "message/rfc822"
    assert run("case", "resolve", "127.0.0.5", "spam", *anchor).strip() == "resolved 127.0.0.5 spam"
    assert json.loads(run("case", "list", "--json", "--status", "received", *anchor)) == []
    assert "no case for 127.0.0.5 in category ddos" in run("case", "resolve", "127.0.0.5", "ddos", *anchor, ok=False)
    assert "no status" in run("case", "list", "--status", "fixed", *anchor, ok=False)


def test_case_export_prints_x_arf_for_a_stored_case(run, tmp_path, root_key):
    spam_case_at(tmp_path, root_key)
    document = json.loads(run("case", "export", "127.0.0.5", "--anchor", root_key.public,
                              "--org", "Example ISP", "--contact", "abuse@isp.example"))
    assert (document["source_identifier"], document["category"], document["type"]) == ("127.0.0.5", "messaging",
                                                                                       "spam")
    assert document["sender"]["org"] == "Example ISP" and document["reporter"]["org"] == "Example CERT"
    assert "no case for 127.0.0.6" in run("case", "export", "127.0.0.6", "--anchor", root_key.public, ok=False)
    assert "no ddos case for 127.0.0.5" in run("case", "export", "127.0.0.5", "--category", "ddos", "--anchor",
                                               root_key.public, ok=False)


def test_local_commands_start_without_loading_the_aws_sdk(run, tmp_path):
    """A local node never needs boto3 or the X-Ray SDK: importing them added half a second to every command."""
    import subprocess
    import sys

    script = ("import sys; from chalicelib.cli.netimmune import main\n"
              "for args in (['keys', 'show'], ['delegate', 'list']):\n"
              "    main(args, standalone_mode=False)\n"
              "print(sorted(m for m in ('boto3', 'botocore.client', 'aws_xray_sdk') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "NETIMMUNE_DB": str(tmp_path / "node.db")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_a_missing_database_is_refused_not_created(run, tmp_path):
    """A mistyped --db must not quietly become a new, empty node (with a token for nobody's node)."""
    output = run("token", "create", "--role", "admin", "--db", str(tmp_path / "tpyo.db"), "--key",
                 str(tmp_path / "node.key"), ok=False)
    assert output.startswith(f"error: no node database at {tmp_path / 'tpyo.db'}")
    assert not (tmp_path / "tpyo.db").exists()


def test_a_file_that_is_not_a_database_is_refused_clearly(run, tmp_path):
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    output = run("delegate", "list", "--db", str(tmp_path / "notes.txt"), "--key", str(tmp_path / "node.key"),
                 ok=False)
    assert output.strip() == f"error: {tmp_path / 'notes.txt'} is not a usable node database: file is not a database"


def test_a_malformed_anchor_is_named_by_its_option(run):
    output = run("delegate", "list", "--anchor", "bogus", ok=False)
    assert output.startswith("error: --anchor: public key must start with")


def test_grant_refuses_to_build_on_a_delegation_held_by_another_key(run, tmp_path, root_key):
    """With --key naming another key than the one the held delegation names, the grant would not validate."""
    from chalicelib.core.delegations import install, list_delegations
    from chalicelib.settings import Settings
    from chalicelib.wiring import build_node
    from tests.conftest import delegate

    node = build_node(Settings(db_path=tmp_path / "node.db", dev_mode=True, trust_anchor=root_key.public))
    install(node, [delegate(root_key, "127.0.0.0/16", node.key).document])
    KeyPair.generate().save(tmp_path / "other.key")
    output = run("delegate", "grant", "127.0.1.0/24", "--holder", KeyPair.generate().public, "--to",
                 "http://127.0.0.2:8080", "--anchor", root_key.public, "--key", str(tmp_path / "other.key"), ok=False)
    assert output.startswith("error: the delegation held for 127.0.1.0/24 names ")
    assert list_delegations(node)["granted"] == []


def test_a_node_holding_space_refuses_to_grant_as_a_root_without_its_anchor(run, tmp_path, root_key):
    """Without --anchor the node would sign as a root: a one-link chain no client trusts."""
    from chalicelib.core.delegations import install, list_delegations
    from chalicelib.settings import Settings
    from chalicelib.wiring import build_node
    from tests.conftest import delegate

    node = build_node(Settings(db_path=tmp_path / "node.db", dev_mode=True, trust_anchor=root_key.public))
    install(node, [delegate(root_key, "127.0.0.0/16", node.key).document])
    output = run("delegate", "grant", "127.0.1.0/24", "--holder", KeyPair.generate().public, "--to",
                 "http://127.0.0.2:8080", ok=False)
    assert f"--anchor {root_key.public}" in output
    assert list_delegations(node)["granted"] == []


def test_installing_a_chain_from_another_root_names_the_anchor_in_use(run, root_key):
    from chalicelib.core.delegations import install
    from chalicelib.core.errors import Unprocessable
    from chalicelib.settings import Settings
    from chalicelib.wiring import build_node
    from tests.conftest import delegate

    node = build_node(Settings.from_env())
    with pytest.raises(Unprocessable, match=f"trust anchor is {node.key.public}.*--anchor"):
        install(node, [delegate(root_key, "127.0.0.0/16", node.key).document])


def test_serve_refuses_an_oversized_body_before_reading_it(tmp_path):
    """waitress answers 413 from the Content-Length alone instead of buffering up to 1 GiB first."""
    import socket

    from chalicelib.adapters.wsgi import MAX_BODY
    from chalicelib.cli.localnet import LocalNode

    node = LocalNode("big", tmp_path)
    node.create_key()
    node.start()
    try:
        with socket.create_connection((node.host, node.port), timeout=5) as connection:
            connection.sendall(f"POST /v1/reports/batch HTTP/1.1\r\nHost: {node.host}\r\nContent-Type: application/json"
                               f"\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
            assert connection.recv(64).startswith(b"HTTP/1.1 413")
    finally:
        node.stop()


def test_key_commands_offer_only_the_options_they_use(run):
    assert "--anchor" not in run("keys", "new", "--help") and "--out" in run("keys", "new", "--help")


def test_output_piped_to_a_reader_that_stops_early_is_no_error(tmp_path):
    """`netimmune delegate list --json | head -1`: the reader closes the pipe, and that is not a failure to report."""
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "NETIMMUNE_DB": str(tmp_path / "node.db"), "NETIMMUNE_DEV_MODE": "1"}
    main_of = [sys.executable, "-c", "from chalicelib.cli.netimmune import main; main()"]
    for args in (["keys", "new"], ["worker", "--once"]):
        subprocess.run([*main_of, *args], check=True, capture_output=True, env=env, timeout=60)
    reader_gone = subprocess.Popen([*main_of, "delegate", "list", "--json"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env)
    reader_gone.stdout.close()   # before the command writes: it takes a while to start
    assert reader_gone.wait(timeout=60) == 1
    assert reader_gone.stderr.read() == b""


def test_token_list_shows_ids_and_token_revoke_withdraws_one(run):
    token, said = run("token", "create", "--role", "reader", "--label", "noc dashboard").splitlines()
    run("token", "create", "--role", "appliance")
    listed = json.loads(run("token", "list", "--json"))
    assert [(t["role"], t["label"]) for t in listed] == [("reader", "noc dashboard"), ("appliance", "")]
    assert token not in str(listed)
    reader_id = listed[0]["id"]
    assert said.startswith(f"token id {reader_id}: ")   # create names the id that revoke takes
    assert f"{reader_id}  reader" in run("token", "list")
    assert run("token", "revoke", reader_id).strip() == f"revoked {reader_id} (reader, noc dashboard)"
    assert [t["role"] for t in json.loads(run("token", "list", "--json"))] == ["appliance"]
    assert f"no token with id {reader_id}" in run("token", "revoke", reader_id, ok=False)


def holding_node(tmp_path, root_key, **link):
    """The CLI's node, holding 127.0.0.0/16 from the root (`link`: the delegation's other fields)."""
    from chalicelib.core.delegations import install
    from chalicelib.settings import Settings
    from chalicelib.wiring import build_node
    from tests.conftest import delegate

    node = build_node(Settings(db_path=tmp_path / "node.db", dev_mode=True, trust_anchor=root_key.public))
    install(node, [delegate(root_key, "127.0.0.0/16", node.key, **link).document])
    return node


def endorse(*args) -> dict:
    """`netimmune endorse`, whose stdout is the credentials file."""
    result = CliRunner().invoke(main, ["endorse", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_credentials_from_endorse_give_a_report_the_endorsed_rank_at_a_node(run, tmp_path, root_key, monkeypatch):
    from chalicelib.cli.report import init as report_init
    from chalicelib.cli.report import use_credentials
    from chalicelib.client.config import ReporterConfig
    from chalicelib.core import intake
    from chalicelib.protocol.categories import by_slug
    from chalicelib.protocol.report import build_report, sign_envelope

    node = holding_node(tmp_path, root_key)
    monkeypatch.setenv("NETIMMUNE_CONFIG_DIR", str(tmp_path / "reporter"))
    reporter_cli = CliRunner()
    assert reporter_cli.invoke(report_init, ["--root-url", "http://127.0.0.1:9", "--root-key", root_key.public,
                                             "--dev"]).exit_code == 0
    reporter = KeyPair.load(tmp_path / "reporter" / "reporter.key")
    credentials = endorse(reporter.public, "--rank", "noc", "--org", "Example NOC", "--days", "30",
                          "--anchor", root_key.public)
    (tmp_path / "noc.json").write_text(json.dumps(credentials))
    attached = reporter_cli.invoke(use_credentials, [str(tmp_path / "noc.json")])
    assert attached.exit_code == 0, attached.output

    config = ReporterConfig.load(tmp_path / "reporter" / "report.json")
    body = build_report(by_slug("open-proxy"), "127.0.0.9", config.reporter, node.clock.now())
    answer = intake.submit(node, [sign_envelope(body, reporter, config.credentials())])[0]
    assert answer.status == 202 and answer.body["rank"] == "noc" and "credentials_ignored" not in answer.body
    assert [(c.reporter, c.rank) for c in node.reports.list_cases()[0].contributions] == [(reporter.public, "noc")]


def test_endorse_is_refused_by_a_node_that_holds_no_space(run):
    output = run("endorse", KeyPair.generate().public, "--rank", "noc", "--org", "Example NOC", ok=False)
    assert output.startswith("error: only a node holding space may endorse")


def test_an_endorsement_ends_no_later_than_the_chain_it_hangs_from(run, tmp_path, root_key):
    from tests.conftest import NOW

    holding_node(tmp_path, root_key, not_after=NOW + timedelta(days=10))
    credentials = endorse(KeyPair.generate().public, "--rank", "trusted", "--org", "Example CERT", "--days", "90",
                          "--anchor", root_key.public)
    assert credentials["credentials"][-1]["endorsement"]["not_after"] == "2026-12-06T12:00:00Z"


def test_endorse_without_the_anchor_says_to_set_it(run, tmp_path, root_key):
    """Without --anchor the node takes itself for the root, and its own chain does not start from it."""
    holding_node(tmp_path, root_key)
    output = run("endorse", KeyPair.generate().public, "--rank", "noc", "--org", "Example NOC", ok=False)
    assert "set --anchor" in output and "untrusted_root" in output
