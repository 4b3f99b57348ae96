"""The lab's certificate authority: a CA key and certificate, and the server certificates it issues.

Every WinRM twin serves HTTPS with a certificate issued here, so clients validate server
certificates exactly as in production (pywinrm ``server_cert_validation='validate'`` with
``ca_trust_path=<ca.pem>``) instead of switching validation off.

Keys are ECDSA P-256: quick to generate (a fleet of hundreds of twins gets hundreds of
certificates) and accepted by Windows' HTTP.sys and by OpenSSL. Certificates carry what strict
verifiers insist on (RFC 5280): basic constraints, key usage, extended key usage ``serverAuth``,
subject and authority key identifiers, and the host name and addresses as subjectAltName
(RFC 6125 §6.4.4: clients match the SAN, not the common name). Private keys are written 0600,
atomically, and never printed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CA_VALID_DAYS = 825
SERVER_VALID_DAYS = 397  # CA/Browser Forum maximum for server certificates since 2020
_CLOCK_SKEW = datetime.timedelta(minutes=5)


class CAError(Exception):
    """The lab CA cannot be created, loaded or used (one line, no secrets)."""


@dataclass(frozen=True)
class ServerCertificate:
    """A server certificate and its private key on disk, as an HTTPS listener loads them."""

    cert_path: Path
    key_path: Path
    ca_path: Path  # the CA certificate that validates cert_path


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only (0600), atomically.

    The temporary file is created 0600 in the target directory, so the content never exists
    under a wider mode, and `os.replace` makes the switch atomic.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _write_public_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LabCA:
    """A certificate authority kept in one directory (`ca.pem`, `ca.key`)."""

    def __init__(
        self, directory: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.directory = directory
        self.certificate = certificate
        self._key = key

    @property
    def cert_path(self) -> Path:
        """The CA certificate (PEM): what clients pass as their trust path."""
        return self.directory / CA_CERT_FILE

    @classmethod
    def create(cls, directory: Path, common_name: str = "relayguard lab CA") -> LabCA:
        """Create a new CA in `directory`; refuses to overwrite an existing one."""
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        if cert_path.exists() or key_path.exists():
            raise CAError(f"a lab CA already exists in {directory}")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "relayguard lab"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = _now()
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        write_private_file(key_path, _key_pem(key))
        _write_public_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
        return cls(directory, certificate, key)

    @classmethod
    def load(cls, directory: Path) -> LabCA:
        """Load the CA kept in `directory`."""
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise CAError(f"no lab CA in {directory} ({Path(exc.filename).name} missing)") from None
        except ValueError:
            raise CAError(f"the lab CA in {directory} is unreadable") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CAError(f"the lab CA key in {directory} is not an EC key")
        return cls(directory, certificate, key)

    @classmethod
    def ensure(cls, directory: Path) -> LabCA:
        """Load the CA in `directory`, creating it first if there is none."""
        if (directory / CA_CERT_FILE).exists() or (directory / CA_KEY_FILE).exists():
            return cls.load(directory)
        return cls.create(directory)

    def issue_server_certificate(
        self,
        directory: Path,
        host_name: str,
        addresses: Iterable[str] = (),
        *,
        file_stem: str = "winrm",
        valid_days: int = SERVER_VALID_DAYS,
    ) -> ServerCertificate:
        """Issue a certificate for `host_name` and IP `addresses`, written to `directory`.

        Files: `<file_stem>.pem` (certificate) and `<file_stem>.key` (0600).
        """
        if not host_name:
            raise CAError("a server certificate needs a host name")
        try:
            ips = [ipaddress.ip_address(a) for a in addresses]
        except ValueError as exc:
            raise CAError(f"invalid address for a certificate: {exc}") from None
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        public = key.public_key()
        ca_public = self.certificate.public_key()
        if not isinstance(ca_public, ec.EllipticCurvePublicKey):
            raise CAError("the lab CA certificate does not hold an EC key")
        general_names: list[x509.GeneralName] = [x509.DNSName(host_name)]
        general_names.extend(x509.IPAddress(ip) for ip in ips)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_path = directory / f"{file_stem}.pem"
        key_path = directory / f"{file_stem}.key"
        write_private_file(key_path, _key_pem(key))
        _write_public_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
        return ServerCertificate(cert_path=cert_path, key_path=key_path, ca_path=self.cert_path)
