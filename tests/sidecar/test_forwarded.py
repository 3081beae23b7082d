"""daprd's forwarding headers on the hop between sidecars, and the host address it names."""

from __future__ import annotations

import ipaddress

import pytest

from sidecar.forwarded import ForwardedHost, host_address


def test_ipv4_host() -> None:
    assert ForwardedHost("192.0.2.2", "vm").headers() == [
        ("X-Forwarded-For", "192.0.2.2"),
        ("X-Forwarded-Host", "vm"),
        ("Forwarded", "for=192.0.2.2;by=192.0.2.2;host=vm"),
    ]


@pytest.mark.parametrize(
    ("address", "node"),
    [("::1", '"[::1]"'), ("fd00::2", '"[fd00::2]"'), ("::ffff:1.2.3.4", "::ffff:1.2.3.4")],
)
def test_rfc7239_quotes_ipv6_but_not_ipv4_mapped(address: str, node: str) -> None:
    assert ForwardedHost(address, "h").headers()[-1] == (
        "Forwarded",
        f"for={node};by={node};host=h",
    )


def test_what_daprd_cannot_find_it_leaves_out() -> None:
    assert ForwardedHost("", "h").headers() == [
        ("X-Forwarded-Host", "h"),
        ("Forwarded", "host=h"),
    ]
    assert ForwardedHost("", "").headers() == [("Forwarded", "")]


def test_host_address_prefers_dapr_host_ip_then_the_dialled_source() -> None:
    def dial(family: int, target: str) -> str | None:
        return {"192.0.2.1": None, "2001:db8::1": "fd00::2"}[target]

    assert host_address({"DAPR_HOST_IP": "10.1.2.3"}, dial=dial) == "10.1.2.3"
    assert host_address({}, dial=dial) == "fd00::2"
    assert host_address({}, dial=lambda f, t: "192.0.0.1" if ":" not in t else "fd00::3") == (
        "fd00::3"  # a CLAT source address is skipped
    )


@pytest.mark.parametrize(
    ("addresses", "best"),
    [
        (["127.0.0.1", "::1"], ""),
        (["fe80::1", "10.0.0.1"], "10.0.0.1"),
        (["10.0.0.1", "fd00::2", "2a00::1"], "2a00::1"),
        (["100.64.0.9", "fd00::2"], "100.64.0.9"),
        (["10.0.0.1", "8.8.4.4"], "8.8.4.4"),
        (["169.254.1.1", "ff02::1"], "169.254.1.1"),
    ],
)
def test_host_address_falls_back_to_the_best_interface(addresses: list[str], best: str) -> None:
    found = [ipaddress.ip_address(a) for a in addresses]
    assert host_address({}, dial=lambda f, t: None, interfaces=lambda: found) == best
