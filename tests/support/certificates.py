"""A throwaway certificate authority for TLS tests, made with `cryptography` in the test:
a server certificate for 127.0.0.1 and client certificates named by their common name.
Nothing is read from the machine; every file goes under the directory given."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """A certificate and its unencrypted key, as PEM files."""

    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class CertificateAuthority:
    """A self-signed CA; `issue_server()` and `issue_client(name)` sign certificates."""

    def __init__(self, directory: Path, name: str = "taskgrove test CA") -> None:
        self.directory = directory
        self.slug = name.replace(" ", "-")
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _name(name)
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert = directory / f"{self.slug}.pem"
        self.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    def _issue(
        self,
        file_stem: str,
        common_name: str,
        usage: x509.ObjectIdentifier,
        *,
        valid_days: float = 1,
        san: list[x509.GeneralName] | None = None,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=2))
            .not_valid_after(now + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        issued = Issued(
            cert=self.directory / f"{self.slug}-{file_stem}.pem",
            key=self.directory / f"{self.slug}-{file_stem}.key",
        )
        issued.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key)
        return issued

    def issue_server(self, *, valid_days: float = 1) -> Issued:
        """For 127.0.0.1 and localhost (`valid_days` < 0: already expired)."""
        return self._issue(
            "server",
            "127.0.0.1",
            ExtendedKeyUsageOID.SERVER_AUTH,
            valid_days=valid_days,
            san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        )

    def issue_server_for(self, dns_name: str) -> Issued:
        """For one DNS name only (no IP address): e.g. "localhost"."""
        return self._issue(
            f"server-{dns_name.replace('*', 'any')}",
            dns_name,
            ExtendedKeyUsageOID.SERVER_AUTH,
            san=[x509.DNSName(dns_name)],
        )

    def issue_client(self, common_name: str) -> Issued:
        return self._issue(f"client-{common_name}", common_name, ExtendedKeyUsageOID.CLIENT_AUTH)
