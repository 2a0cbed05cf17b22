"""The source IP allowlist shared by account binds and the SMSPAY prepaid API."""
import pytest

from hlrsmpp.accounts.allowlist import ip_allowed, parse_allowlist
from hlrsmpp.accounts import Account
from hlrsmpp.server.http.prepaid import parse_service


def test_addresses_and_networks_are_parsed_once():
    nets = parse_allowlist(["192.0.2.7", " 10.1.2.3/8 ", "2001:db8::/32"], "allowed_ips")
    assert [str(n) for n in nets] == ["192.0.2.7/32", "10.0.0.0/8", "2001:db8::/32"]
    assert parse_allowlist("198.51.100.0/24", "x") == parse_allowlist(["198.51.100.0/24"], "x")
    assert parse_allowlist(None, "x") == ()


def test_a_bad_entry_is_named():
    with pytest.raises(ValueError, match=r"where: '10.0.0.300' is not an IP address or CIDR network"):
        parse_allowlist(["10.0.0.1", "10.0.0.300"], "where")


@pytest.mark.parametrize("ip, allowed", [
    ("192.0.2.7", True), ("192.0.2.8", False),
    ("10.200.0.1", True), ("11.0.0.1", False),
    ("::ffff:10.9.9.9", True),         # an IPv4 peer on a dual-stack listener
    ("::ffff:192.0.2.8", False),
    ("2001:db8:5::1", True), ("2001:db9::1", False),
    ("not an address", False), ("", False),
])
def test_a_peer_is_checked_against_the_networks(ip, allowed):
    nets = parse_allowlist(["192.0.2.7", "10.0.0.0/8", "2001:db8::/32"], "allowed_ips")
    assert ip_allowed(ip, nets) is allowed


def test_accounts_and_prepaid_services_parse_alike():
    acc = Account.from_config({"system_id": "a", "password": "pw", "allowed_ips": ["10.0.0.0/8", "::1"]})
    svc = parse_service({"service_id": 1, "user_id": 2, "account": "a", "allowed_ips": ["10.0.0.0/8", "::1"]}, 0)
    assert acc.settings.allowed_ips == svc.allowed_ips
    with pytest.raises(ValueError, match=r"prepaid.services\[0\].allowed_ips: 'x' is not an IP"):
        parse_service({"service_id": 1, "user_id": 2, "account": "a", "allowed_ips": ["x"]}, 0)
