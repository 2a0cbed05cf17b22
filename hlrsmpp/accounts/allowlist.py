"""Source IP allowlists (of an account, of a prepaid service): parsed once from the
configuration, checked against each connecting peer; and the client certificate an
account may pin (``tls_subject``)."""
from __future__ import annotations

import ipaddress
from typing import Any

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_address(ip: str) -> IpAddress | None:
    """The address of a peer as a listener reports it; None when it is not an address."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; allowlists say a.b.c.d.
    if a.version == 6 and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def parse_allowlist(v: Any, where: str) -> tuple[IpNetwork, ...]:
    """Addresses and CIDR networks, one or a list; None: empty (anyone may connect).
    Host bits are allowed (10.1.2.3/8 means 10.0.0.0/8)."""
    if v is None:
        return ()
    out = []
    for n in v if isinstance(v, (list, tuple)) else [v]:
        try:
            out.append(ipaddress.ip_network(str(n).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{where}: {n!r} is not an IP address or CIDR network") from None
    return tuple(out)


def ip_allowed(ip: str, nets: tuple[IpNetwork, ...]) -> bool:
    """Whether peer `ip` is inside one of `nets` (an unparsable peer never is)."""
    a = peer_address(ip)
    return a is not None and any(a in n for n in nets)


def parse_subject(text: str, where: str) -> frozenset[tuple[str, str]]:
    """A pinned certificate subject: ``CN=esme1,O=Acme`` (names as OpenSSL prints them),
    or a bare name meaning its common name. A certificate matches when its subject has
    every attribute the pin names, with that value."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: expected a certificate subject such as CN=esme1,O=Acme")
    if "=" not in text:
        return frozenset({("CN", text.strip())})
    out = set()
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ValueError(f"{where}: {part.strip()!r} is not NAME=VALUE")
        out.add((key.strip().upper(), value.strip()))
    return frozenset(out)
