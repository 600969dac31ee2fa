"""Keys in their text form and on disk; addresses, prefixes and special-purpose space."""
from __future__ import annotations

import ipaddress
import os
import stat

import pytest

from chalicelib.protocol.keys import InvalidKey, KeyPair, parse_public_key
from chalicelib.protocol.prefixes import SPECIAL_PURPOSE, AddressError, parse_ip, parse_prefix, special_purpose
from chalicelib.protocol.signing import sign_object, signature_problem


def test_key_file_is_written_owner_only_and_loads_back(tmp_path):
    key = KeyPair.generate()
    key.save(tmp_path / "node.key")
    assert stat.S_IMODE(os.stat(tmp_path / "node.key").st_mode) == 0o600
    assert KeyPair.load(tmp_path / "node.key").public == key.public


def test_existing_key_file_is_never_overwritten(tmp_path):
    KeyPair.generate().save(tmp_path / "node.key")
    with pytest.raises(InvalidKey, match="refusing to overwrite"):
        KeyPair.generate().save(tmp_path / "node.key")


def test_key_file_readable_by_others_is_refused(tmp_path):
    KeyPair.generate().save(tmp_path / "node.key")
    os.chmod(tmp_path / "node.key", 0o644)
    with pytest.raises(InvalidKey, match="chmod 600"):
        KeyPair.load(tmp_path / "node.key")


def test_public_key_text_form_is_ed25519_base64url_without_padding():
    public = KeyPair.from_seed(b"\x00" * 32).public
    assert public.startswith("ed25519:") and "=" not in public and len(public) == 8 + 43
    assert bytes(parse_public_key(public)) == bytes(KeyPair.from_seed(b"\x00" * 32).signing_key.verify_key)


@pytest.mark.parametrize("text", ["ed25519:", "ed25519:AAAA", "x25519:" + "A" * 43, "ed25519:" + "A" * 42 + "=", 7])
def test_malformed_public_keys_are_refused(text):
    with pytest.raises(InvalidKey):
        parse_public_key(text)


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def flip_spare_bit(text: str) -> str:
    """The same bytes with the lowest unused bit of the last character set: lenient decoders ignore it."""
    return text[:-1] + _B64URL[_B64URL.index(text[-1]) ^ 1]


# a key whose text has both '-' and '_', spelled the ways a lenient decoder reads as the same 32 bytes
_KEY = KeyPair.from_seed(b"\x02" * 32).public   # ed25519:gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q


@pytest.mark.parametrize("text", [
    _KEY[:16] + "!!" + _KEY[16:],
    _KEY[:16] + "\n" + _KEY[16:],
    _KEY.replace("-", "+").replace("_", "/"),
    flip_spare_bit(_KEY),
], ids=["stray-characters", "line-break", "standard-alphabet", "spare-bit"])
def test_a_key_has_one_spelling_only(text):
    """A key's text is the reporter's identity: a second spelling would count as a second reporter."""
    with pytest.raises(InvalidKey):
        parse_public_key(text)


def test_a_signature_has_one_spelling_only():
    signature = sign_object({"a": 1}, KeyPair.generate())
    assert "malformed" in signature_problem({"a": 1}, {**signature, "sig": flip_spare_bit(signature["sig"])})


def test_signature_covers_the_canonical_form_not_the_key_order():
    key = KeyPair.generate()
    signature = sign_object({"b": 1, "a": [1, 2]}, key)
    assert signature_problem({"a": [1, 2], "b": 1}, signature) is None
    assert signature_problem({"a": [2, 1], "b": 1}, signature) == "signature does not verify"
    assert "different key" in signature_problem({"a": [1, 2], "b": 1}, signature, signer=KeyPair.generate().public)


def test_ipv4_mapped_ipv6_is_the_ipv4_address():
    assert parse_ip("::ffff:127.0.0.1") == ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize("text", ["127.0.0.256", "abc", "", "fe80::1%eth0"])
def test_bad_addresses_are_refused_with_a_message(text):
    with pytest.raises(AddressError):
        parse_ip(text)


@pytest.mark.parametrize("text", ["127.0.0.1/8", "127.0.0.0", "2001:db8::/129", "198.51.100.0/255.255.255.0",
                                  "198.51.100.0/0.0.0.255", "198.51.100.0/024", " 198.51.100.0/24\n",
                                  "fe80::%eth0/64", "198.51.100.0/+24"])
def test_prefixes_not_in_cidr_form_are_refused(text):
    with pytest.raises(AddressError):
        parse_prefix(text)


@pytest.mark.parametrize("text,name", [
    ("127.0.0.1", "loopback"), ("192.0.2.7", "documentation (TEST-NET-1)"), ("::1", "loopback"),
    ("2001:db8::1", "documentation"), ("fd00::1", "unique local"), ("224.0.0.1", "multicast"),
    ("100.64.1.1", "shared address space (CGN)"),
])
def test_special_purpose_addresses_are_named(text, name):
    assert special_purpose(parse_ip(text)) == name


@pytest.mark.parametrize("text", ["9.9.9.9", "2a00:1450::1", "192.1.0.0/16", "192.0.0.0/8"])
def test_global_space_is_not_special(text):
    target = parse_prefix(text) if "/" in text else parse_ip(text)
    assert special_purpose(target) is None


BOUNDARIES = [address for network, _ in SPECIAL_PURPOSE
              for address in (network.network_address - 1 if int(network.network_address) else None,
                              network.network_address, network.broadcast_address,
                              network.broadcast_address + 1 if int(network.broadcast_address) < (
                                  1 << network.max_prefixlen) - 1 else None) if address is not None]


@pytest.mark.parametrize("address", BOUNDARIES, ids=str)
def test_special_purpose_agrees_with_ipaddress_containment_at_every_range_edge(address):
    expected = next((name for network, name in SPECIAL_PURPOSE
                     if network.version == address.version and address in network), None)
    assert special_purpose(address) == expected


@pytest.mark.parametrize("text, message", [
    ("fe80::1%eth0", "'fe80::1%eth0': scoped addresses are not routable"),
    ("%zz", "'%zz' is not an IPv4 or IPv6 address"),
    ("192.0.2.1%eth0", "'192.0.2.1%eth0' is not an IPv4 or IPv6 address"),
])
def test_only_an_ipv6_address_with_a_zone_is_called_scoped(text, message):
    with pytest.raises(AddressError) as refused:
        parse_ip(text)
    assert str(refused.value) == message
