"""The name the bridge checks the server's certificate for.

The bridge dials the server's own port on 127.0.0.1, trusting only the server's own
certificate chain (`--tls-cert`). A certificate made for the host's name (`localhost`,
`tasks.example.com`) rather than for 127.0.0.1 is still that certificate: the bridge
then verifies the host name against a name the certificate itself gives
(`grpc.ssl_target_name_override`), so the chain is checked exactly as before and calls
work, instead of each one failing UNAVAILABLE on a name mismatch.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID

_LOOPBACK = ipaddress.ip_address("127.0.0.1")
_STAND_IN = "console"
"""The label a wildcard name (`*.example.com`) is checked with: any one label matches."""


def target_name_override(chain_pem: bytes) -> str | None:
    """A DNS name the chain's first (leaf) certificate is valid for, or None when it
    names 127.0.0.1 (nothing to override) or no DNS name at all."""
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        # No SAN: verifiers fall back to the common name.
        common = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = str(common[0].value) if common else ""
        return None if not value or value == str(_LOOPBACK) else _concrete(value)
    if _LOOPBACK in names.get_values_for_type(x509.IPAddress):
        return None
    dns = names.get_values_for_type(x509.DNSName)
    return _concrete(dns[0]) if dns else None


def _concrete(name: str) -> str:
    return f"{_STAND_IN}{name[1:]}" if name.startswith("*.") else name
