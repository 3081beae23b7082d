"""The forwarding headers daprd adds to an invocation it sends to another app's sidecar.

daprd's directMessaging (pkg/messaging/direct_messaging.go, addForwardedHeadersToMetadata) names
its own host: ``X-Forwarded-For`` (the host's outbound IP, utils/host.go GetHostAddress),
``X-Forwarded-Host`` (os.Hostname) and ``Forwarded`` (RFC 7239). Each is added as one more value,
after any the caller sent. It does so only on the hop to another app, never when an app invokes
itself, and computes the host once, at startup.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Overrides the host address daprd picks (utils.HostIPEnvVar).
HOST_IP_ENV = "DAPR_HOST_IP"
#: Documentation addresses daprd "dials" over UDP: the kernel then names its preferred source
#: address, and no packet is sent.
_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))
#: 464XLAT's CLAT range: never a host's address to daprd.
_CLAT = ipaddress.ip_network("192.0.0.0/29")
#: Go's IP.IsPrivate for IPv4 (RFC 1918), and the shared range daprd ranks with it (RFC 6598).
_PRIVATE_V4 = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ULA = ipaddress.ip_network("fc00::/7")  #: Go's IP.IsPrivate for IPv6
_SIOCGIFADDR = 0x8915  #: Linux ioctl: an interface's IPv4 address
_IF_INET6 = Path("/proc/net/if_inet6")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class ForwardedHost:
    """What daprd says about its host on every hop to another app's sidecar."""

    address: str  #: "" when daprd finds none (then no X-Forwarded-For, no for/by)
    name: str  #: the host name; "" when unknown (then no X-Forwarded-Host, no host=)

    @classmethod
    def discover(cls, env: Mapping[str, str]) -> ForwardedHost:
        try:
            name = socket.gethostname()
        except OSError:
            name = ""
        return cls(host_address(env), name)

    def headers(self) -> list[tuple[str, str]]:
        """The fields to append to the caller's: daprd's addOrCreate adds a value to a header
        the caller sent, so the app gets the caller's X-Forwarded-For and then this one."""
        added: list[tuple[str, str]] = []
        forwarded = ""
        if self.address:
            added.append(("X-Forwarded-For", self.address))
            quoted = _forwarded_node(self.address)
            forwarded = f"for={quoted};by={quoted}"
        if self.name:
            added.append(("X-Forwarded-Host", self.name))
            forwarded = f"{forwarded};host={self.name}" if forwarded else f"host={self.name}"
        # Added even when empty, as daprd does (an empty Forwarded reaches the app).
        added.append(("Forwarded", forwarded))
        return added


def _forwarded_node(address: str) -> str:
    """RFC 7239 quotes and brackets an IPv6 address; Go's ParseIP reads no zone, and an
    IPv4-mapped one counts as IPv4 (``To4() != nil``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is None and not ip.ipv4_mapped:
        return f'"[{address}]"'
    return address


def host_address(
    env: Mapping[str, str],
    dial: Callable[[int, str], str | None] | None = None,
    interfaces: Callable[[], list[IPAddress]] | None = None,
) -> str:
    """daprd's GetHostAddress: ``DAPR_HOST_IP``; else the source address the kernel picks to
    reach a documentation address (IPv4, then IPv6); else the best interface address (public
    IPv4, IPv6 global, private IPv4, IPv6 ULA, link-local; never loopback); else ""."""
    override = env.get(HOST_IP_ENV, "")
    if override:
        return override
    for family, target in _PROBES:
        found = (dial or _dial)(family, target)
        if found is None:
            continue
        try:
            in_clat = ipaddress.ip_address(found) in _CLAT
        except ValueError:
            in_clat = False
        if not in_clat:
            return found
    best: IPAddress | None = None
    best_priority = 100
    for ip in (interfaces or _interface_addresses)():
        if ip.is_loopback or ip in _CLAT:
            continue
        priority = _priority(ip)
        if priority >= 0 and (best is None or priority < best_priority):
            best, best_priority = ip, priority
    return str(best) if best is not None else ""


def _priority(ip: IPAddress) -> int:
    """utils/host.go addrPriority: lower is preferred, -1 skips the address."""
    if ip.is_link_local:
        return 99
    if isinstance(ip, ipaddress.IPv4Address):
        return 2 if ip in _CGNAT or any(ip in net for net in _PRIVATE_V4) else 0
    if ip in _ULA:
        return 3
    # Go's IsGlobalUnicast: any address but unspecified, loopback, multicast and link-local.
    return -1 if ip.is_unspecified or ip.is_multicast else 1


def _dial(family: int, target: str) -> str | None:
    """The local address of a UDP socket "connected" to ``target`` (Go's net.Dial("udp")),
    without its IPv6 zone, which Go's IP.String leaves out; None when there is no route."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 80))
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return address.split("%", 1)[0]


def _interface_addresses() -> list[IPAddress]:
    """The host's interface addresses (Go's net.InterfaceAddrs), read the Linux way: each
    interface's IPv4 address by ioctl, the IPv6 ones from /proc. Elsewhere, none."""
    if not sys.platform.startswith("linux"):
        return []
    found: list[IPAddress] = []
    try:
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for _, name in socket.if_nameindex():
                request = struct.pack("256s", name.encode()[:15])
                try:
                    answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
                except OSError:
                    continue  # no IPv4 address on this interface
                found.append(ipaddress.IPv4Address(answer[20:24]))
    except OSError:
        pass
    try:
        lines = _IF_INET6.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if fields:
            found.append(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
    return found
