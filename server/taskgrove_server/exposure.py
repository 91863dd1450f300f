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


def console_refusal(config: ServerConfig) -> str | None:
    """Why the web console (`http_address`) may not be served as configured; None if it may.

    The console's HTTP is plaintext, so beyond loopback it needs authentication and
    `insecure` (put a TLS proxy in front instead). Its bridge calls the gRPC port as a
    plain TLS client: with mutual TLS required it has no certificate to present, and it
    will not weaken that rule, so the console is refused."""
    if config.tls_client_ca_file:
        return (
            f"the web console ({config.http_address}) cannot be served while mutual TLS is "
            "required (--tls-client-ca): its bridge has no client certificate; use --http off"
        )
    if is_loopback(config.http_address):
        return None
    if not config.auth_enabled or not config.insecure:
        return (
            f"refusing to serve the web console on {config.http_address}: it speaks plain HTTP, "
            "so beyond loopback it needs authentication and --insecure said out loud; serve it "
            "on 127.0.0.1 behind a TLS proxy, or --http off"
        )
    return None
