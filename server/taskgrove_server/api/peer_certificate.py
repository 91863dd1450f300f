"""Who a call's client certificate names, once mutual TLS has verified it."""

from __future__ import annotations

from typing import Any


def certificate_name(context: Any) -> str | None:
    """The common name of the verified client certificate of the call, or None.

    gRPC fills `x509_common_name` only for a certificate that chains to the configured
    client CA (the server requires one whenever that CA is set), so nothing a plaintext
    or certificate-less caller sends can put a name here.
    """
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name") or ()
    if not names:
        return None
    try:
        name: str = names[0].decode()
    except UnicodeDecodeError:
        return None
    return name or None
