"""An org file is checked before anything is built, and every mistake in it is named with its field."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.org import OrgConfigError, load_org, org_file
from infra.source import runtime_requirements

REPO = Path(__file__).resolve().parents[2]
ROOT_KEY = "ed25519:A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
VALID = {
    "name": "acme",
    "prefixes": ["198.51.100.0/24", "2001:db8::/32"],
    "root_url": "https://root.example.net",
    "root_key": ROOT_KEY,
    "alert_emails": ["noc@example.net"],
    "alert_phones": ["+15555550100"],
    "policy": str(REPO / "examples" / "policy.yaml"),
}


def write_org(folder: Path, doc: dict, name: str = "acme") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def problems(path: Path) -> str:
    with pytest.raises(OrgConfigError) as caught:
        load_org(path)
    return str(caught.value)


def test_example_org_file_describes_a_deployable_org():
    """The shipped example is what `make synth ORG=example` builds, so it must pass its own checks."""
    org = load_org(org_file("example"))
    assert org.name == "example"
    assert org.prefixes == ("198.51.100.0/24", "2001:db8::/32")
    assert org.policy == REPO / "examples" / "policy.yaml"
    assert org.key_parameter == "/netimmune/example/node-key"
    assert org.endpoint == "https://reports.example.net"
    assert all(email.endswith("@example.net") for email in org.alert_emails)
    assert all(phone.startswith("+1555") for phone in org.alert_phones)


def test_org_without_a_domain_leaves_the_endpoint_to_the_app(tmp_path):
    org = load_org(write_org(tmp_path, VALID))
    assert (org.domain, org.endpoint, org.api_rate_limit, org.verify_concurrency) == (None, "", 50, 2)


@pytest.mark.parametrize("field, value, message", [
    ("name", "Acme_Corp", "name: 'Acme_Corp' must be 1-32 lowercase letters"),
    ("prefixes", ["198.51.100.7/24"], "prefixes: '198.51.100.7/24' is not a valid prefix"),
    ("prefixes", ["198.51.100.0/24", "198.51.100.128/25"], "198.51.100.0/24 and 198.51.100.128/25 overlap"),
    ("prefixes", [], "prefixes: expected a non-empty list"),
    ("root_url", "http://root.example.net", "root_url: 'http://root.example.net' must be an https:// URL"),
    ("root_key", "ed25519:short", "root_key: public key"),
    ("alert_emails", ["noc.example.net"], "alert_emails: not email addresses: 'noc.example.net'"),
    ("alert_phones", ["5555550100"], "alert_phones: not phone numbers in E.164 form"),
    ("domain", "https://reports.example.net", "domain: 'https://reports.example.net' is not a lowercase host"),
    ("verify_concurrency", 1, "verify_concurrency: 1 must be a whole number from 2 to 1000"),
    ("colour", "blue", "colour: unknown field"),
])
def test_a_wrong_field_is_named_in_the_error(tmp_path, field, value, message):
    assert message in problems(write_org(tmp_path, {**VALID, field: value}))


def test_every_problem_is_reported_at_once(tmp_path):
    """An operator fixes the file in one pass instead of one error per run."""
    doc = {key: value for key, value in VALID.items() if key != "root_key"}
    text = problems(write_org(tmp_path, {**doc, "root_url": "ftp://x", "alert_phones": ["x"]}))
    assert [line.split(": ")[1] for line in text.splitlines()] == ["root_key", "root_url", "alert_phones"]
    assert all(line.startswith(str(tmp_path / "acme.yaml")) for line in text.splitlines())


def test_name_must_match_the_file_name(tmp_path):
    """`make deploy ORG=b` with a copied file still saying `name: a` would overwrite org a's stack."""
    assert "name: 'acme' differs from the file name 'other'" in problems(write_org(tmp_path, VALID, "other"))


def test_an_org_without_alert_subscribers_is_refused(tmp_path):
    doc = {key: value for key, value in VALID.items() if not key.startswith("alert_")}
    assert "at least one subscriber is needed" in problems(write_org(tmp_path, doc))


def test_a_certificate_needs_a_domain(tmp_path):
    arn = "arn:aws:acm:eu-west-1:111122223333:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    assert "certificate_arn: given without a domain" in problems(write_org(tmp_path, {**VALID,
                                                                                      "certificate_arn": arn}))


def test_policy_path_is_relative_to_the_org_file_and_its_mistakes_keep_their_line(tmp_path):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bad.yaml").write_text("defaults:\n  verify_at: -1\n")
    text = problems(write_org(tmp_path, {**VALID, "policy": "policies/bad.yaml"}))
    assert f"{tmp_path / 'policies' / 'bad.yaml'}:2:" in text


def test_a_missing_policy_file_is_named(tmp_path):
    assert f"no policy file at {tmp_path / 'nope.yaml'}" in problems(write_org(tmp_path, {**VALID,
                                                                                          "policy": "nope.yaml"}))


def test_a_missing_org_file_says_where_org_files_live(tmp_path):
    assert "infra/orgs/<name>.yaml" in problems(tmp_path / "nosuch.yaml")


def test_lambda_requirements_are_the_project_dependencies_without_chalice():
    """Chalice packages its own runtime; bundling the whole chalice CLI into every function would be waste."""
    pyproject = {"project": {"dependencies": ["chalice>=1.31", "PyNaCl>=1.5", "Chalice_Extra>=1", "rfc8785"]}}
    assert runtime_requirements(pyproject) == ["PyNaCl>=1.5", "Chalice_Extra>=1", "rfc8785"]
