"""Test certificates: a shared test CA (trustme) and self-signed certificates (cryptography)."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as e:  # a missing dependency is a failure, never a skip
    raise AssertionError(f"python dependency missing ({e}): pip install -r tests/e2e/requirements.txt "
                         "(or run .ci/install-deps.sh)") from e

# Short validity on purpose: ejabberd 23.01 (pkix) crashes setting expiry timers for certificates
# valid until the year 3000 (trustme's default), and then has no certificate at all.
VALIDITY = datetime.timedelta(days=30)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _leaf(subject_cn: str, domains, issuer_name, issuer_key, key, server_auth_only: bool = False,
          not_before: datetime.datetime | None = None, not_after: datetime.datetime | None = None):
    purposes = [ExtendedKeyUsageOID.SERVER_AUTH]
    if not server_auth_only:
        purposes.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(hours=1))
        .not_valid_after(not_after or now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=True, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass
class CertFiles:
    cert: Path       # PEM chain (leaf first)
    key: Path        # PEM private key
    combined: Path   # key + chain in one file (ejabberd `certfiles`)


class TestCA:
    """A CA shared by the servers of one test: certificates it issues carry DNS SANs for the XMPP
    domains, so Prosody/ejabberd/fedgate accept them for SASL EXTERNAL (XEP-0178)."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedgate e2e"),
                               x509.NameAttribute(NameOID.COMMON_NAME, "fedgate e2e test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = self.dir / "test-ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.ca_key_file = self.dir / "test-ca.key"
        self.ca_key_file.write_bytes(_pem_key(self.key))
        self.ca_key_file.chmod(0o600)

    def issue(self, name: str, *domains: str, server_auth_only: bool = False,
              not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None) -> CertFiles:
        """server_auth_only: the serverAuth purpose only, as public CAs issue since 2026 (else
        serverAuth and clientAuth). not_before / not_after: the validity (default: from an hour
        ago for VALIDITY), e.g. in the past for an expired certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _leaf(domains[0], domains, self.name, self.key, key, server_auth_only,
                     not_before, not_after)
        paths = CertFiles(self.dir / f"{name}.pem", self.dir / f"{name}.key",
                          self.dir / f"{name}.combined.pem")
        chain = leaf.public_bytes(serialization.Encoding.PEM)
        paths.cert.write_bytes(chain)
        paths.key.write_bytes(_pem_key(key))
        paths.combined.write_bytes(_pem_key(key) + chain)
        for p in (paths.key, paths.combined):
            p.chmod(0o600)
        return paths

    def with_validity(self, not_before: datetime.datetime,
                      not_after: datetime.datetime) -> "ValidityIssuer":
        """This CA issuing with these dates: an issuer for `gateway_world(partner_cert_issuer=)`
        (a partner whose certificate is expired or about to expire)."""
        return ValidityIssuer(self, not_before, not_after)


@dataclass
class ValidityIssuer:
    """`TestCA.with_validity(...)`: `issue(name, *domains)` with fixed dates."""
    ca: TestCA
    not_before: datetime.datetime
    not_after: datetime.datetime

    def issue(self, name: str, *domains: str, **kw) -> CertFiles:
        return self.ca.issue(name, *domains, not_before=self.not_before, not_after=self.not_after, **kw)


def self_signed(directory: Path, name: str, *domains: str) -> CertFiles:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    cert = _leaf(domains[0], domains, subject, key, key)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = _pem_key(key)
    paths = CertFiles(directory / f"{name}.pem", directory / f"{name}.key",
                      directory / f"{name}.combined.pem")
    paths.cert.write_bytes(cert_pem)
    paths.key.write_bytes(key_pem)
    paths.combined.write_bytes(key_pem + cert_pem)
    for p in (paths.key, paths.combined):
        p.chmod(0o600)
    return paths
