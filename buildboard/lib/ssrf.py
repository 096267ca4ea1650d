"""A guard for URLs that strangers give us to POST to (status page webhooks): no loopback, private,
link-local or otherwise non-public targets, unless staff allowed that one subscription.

The host is resolved and every address checked, and the request then goes to one of the checked
addresses (with the original Host header and TLS server name), so a DNS answer that changes between
the check and the connection cannot lead it inside."""

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

import httpx

SCHEMES = ("http", "https")


class UnsafeURL(ValueError):
    """The URL may not be used as a webhook target; the message says why, for people."""


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "not a public address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "not a public address"
    return ""


def resolve(url: str, *, allow_private: bool = False) -> list[str]:
    """The addresses `url`'s host resolves to, all of them checked; raises UnsafeURL."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise UnsafeURL("Only http and https URLs with a host name can receive notifications.")
    if parts.username or parts.password:
        raise UnsafeURL("The URL may not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("The URL's port is not a number from 0 to 65535.") from None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeURL(f"The host {parts.hostname} could not be resolved.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UnsafeURL(f"The host {parts.hostname} has no address.")
    if not allow_private:
        for address in addresses:
            reason = _refused(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason:
                raise UnsafeURL(f"{parts.hostname} resolves to {address}, {reason}; notifications only go to "
                                "public addresses.")
    return addresses


def post(url: str, *, content: bytes, headers: dict, timeout: float, allow_private: bool = False) -> httpx.Response:
    """POST to `url` at an address that passed the check. Redirects are not followed."""
    address = resolve(url, allow_private=allow_private)[0]
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = {**headers, "Host": parts.netloc}
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        request = client.build_request("POST", pinned, content=content, headers=headers, extensions=extensions)
        return client.send(request)
