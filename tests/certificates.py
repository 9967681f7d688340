"""TLS material made at test time: a CA, the broker's certificate and a client certificate signed
by it, and a second, unrelated CA with a client certificate of its own (to be refused).

Every file is PEM; private keys are unencrypted PKCS#8 (``BEGIN PRIVATE KEY``), the form both
Kafka's Java client and Python's ssl module read.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Identity:
    certfile: Path  # the certificate followed by its CA's (a chain Kafka and Python both read)
    keyfile: Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA the broker's certificate and the client certificate are signed by
    server: Identity  # SAN IP:127.0.0.1 only: "localhost" reaches the broker but is not named
    client: Identity
    other_ca: Path  # an unrelated CA: as ssl_cafile, the broker's certificate is not signed by it
    other_client: Identity  # signed by other_ca


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pipeline tests"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def _ca(folder: Path, name: str) -> Tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = _key()
    subject = _name(name)
    certificate = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.pem"
    path.write_bytes(_pem(certificate))
    return certificate, key, path


def _leaf(folder: Path, name: str, ca: x509.Certificate, ca_key, server: bool) -> Identity:
    key = _key()
    builder = (
        _builder(_name(name), ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        # Only the address the broker listens on, so connecting by "localhost" shows the
        # hostname check refusing a certificate that does not name the host.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    certificate = builder.sign(ca_key, hashes.SHA256())
    certfile, keyfile = folder / f"{name}.crt.pem", folder / f"{name}.key.pem"
    certfile.write_bytes(_pem(certificate) + _pem(ca))
    keyfile.write_bytes(_pem_key(key))
    keyfile.chmod(0o600)
    return Identity(certfile, keyfile)


def make_tls_files(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key, ca_path = _ca(folder, "test-ca")
    other, other_key, other_path = _ca(folder, "other-ca")
    return TlsFiles(
        ca=ca_path,
        server=_leaf(folder, "broker", ca, ca_key, server=True),
        client=_leaf(folder, "pipeline-client", ca, ca_key, server=False),
        other_ca=other_path,
        other_client=_leaf(folder, "other-client", other, other_key, server=False),
    )
