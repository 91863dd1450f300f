"""Whether a listen address is reachable from other machines, and the start-up rule that
follows: an address beyond loopback is served only with TLS and authentication, or with
`insecure` said out loud (and then a warning on every start)."""

from __future__ import annotations

import ipaddress
import socket

from taskgrove_server.config import ConfigError, ServerConfig


def host_of(address: str) -> str:
    """The host part of `host:port`, `[v6]:port` or `:port` ("" = every interface)."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(address: str) -> bool:
    """True only if every address the host stands for is a loopback one.

    A name is resolved (a `localhost` mapped to a LAN address in /etc/hosts is not
    loopback); an empty host, `0.0.0.0`, `::` and names that do not resolve are not.
    """
    host = host_of(address)
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    ips = {str(info[4][0]) for info in found}
    return bool(ips) and all(ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback for ip in ips)


def exposure_warning(config: ServerConfig) -> str | None:
    """None if the address is safe to serve as configured; the warning to log on every
    start if it is exposed but `insecure` allows it. Raises ConfigError otherwise."""
    missing = [
        name
        for name, present in (("TLS", config.tls_enabled), ("authentication", config.auth_enabled))
        if not present
    ]
    if not missing or is_loopback(config.address):
        return None
    what = " and ".join(missing)
    if not config.insecure:
        raise ConfigError(
            f"refusing to serve {config.address} without {what}: anyone who reaches it could "
            "read and steer every task. Configure --tls-cert/--tls-key and --tokens-file (or "
            "--jwt-*, --tls-client-ca), listen on 127.0.0.1 behind a proxy, or pass --insecure"
        )
    return f"INSECURE: serving {config.address} without {what} (--insecure); see SECURITY.md"
