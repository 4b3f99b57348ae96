"""Who may use a twin's WinRM endpoint: accounts, NTLM (pyspnego as acceptor) and Basic.

NTLM: pyspnego's acceptor (``spnego.server(protocol="ntlm")``) checks the client's response
against a credential store it finds through the ``NTLM_USER_FILE`` environment variable, in
Heimdal's ``DOMAIN:USER:PASSWORD`` line format (one line per account and domain spelling;
pyspnego matches user and domain case-insensitively). The file lives in the twin's directory,
mode 0600. pyspnego reads the variable when a context is created and again when it checks
the AUTHENTICATE message, so — one variable per process, many twins per process — every such
call runs under one lock with the variable pointing at this twin's file.

Channel binding (RFC 5929 ``tls-server-end-point``): over HTTPS the acceptor is given the
binding of the twin's certificate, so a client that sends a binding (requests_ntlm does) must
send the right one, as with Windows' CbtHardeningLevel; pyspnego accepts a client that sends
none (all zeros), like Windows' default "Relaxed".

Basic: ``Authorization: Basic`` over HTTPS only (Windows refuses it over HTTP unless
AllowUnencrypted is set); the password is compared in constant time.

A local account (``domain == ""``) answers to ``user``, ``.\\user`` and ``HOSTNAME\\user``,
as a Windows local account does. Passwords never appear in logs, messages or reprs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from spnego.channel_bindings import GssChannelBindings

from relayguard.lab.ca import write_private_file

NTLM_USER_FILE = "NTLM_USER_FILE"
_FORBIDDEN = (":", "\n", "\r", "\x00")


class AuthenticationFailed(Exception):
    """The client's credentials were refused (the server answers 401)."""


@dataclass(frozen=True)
class WinRMAccount:
    """An account that may log on to the twin over WinRM."""

    username: str
    password: str = field(repr=False)
    domain: str = ""  # "" = a local account of the twin

    def __post_init__(self) -> None:
        # The credential store is colon-separated, one entry per line.
        for name, value in (("username", self.username), ("domain", self.domain)):
            if any(c in value for c in (*_FORBIDDEN, "\\", "@")):
                raise ValueError(f"WinRM account {name} contains a character it may not hold")
        if not self.username:
            raise ValueError("WinRM account username is empty")
        if any(c in self.password for c in _FORBIDDEN):
            raise ValueError("WinRM account password contains ':', a line break or NUL")

    @property
    def principal(self) -> str:
        return f"{self.domain}\\{self.username}" if self.domain else self.username


def domain_spellings(account: WinRMAccount, hostname: str) -> tuple[str, ...]:
    """The NTLM/Basic domains under which `account` authenticates."""
    if account.domain:
        return (account.domain,)
    return ("", ".", hostname.upper())


def find_account(
    accounts: Sequence[WinRMAccount], domain: str, username: str, hostname: str
) -> WinRMAccount | None:
    for account in accounts:
        if account.username.casefold() != username.casefold():
            continue
        if domain.casefold() in (d.casefold() for d in domain_spellings(account, hostname)):
            return account
    return None


def split_principal(principal: str) -> tuple[str, str]:
    domain, _, user = principal.rpartition("\\")
    return domain, user


def credential_store_text(accounts: Iterable[WinRMAccount], hostname: str) -> str:
    lines = [
        f"{domain}:{account.username}:{account.password}"
        for account in accounts
        for domain in domain_spellings(account, hostname)
    ]
    return "\n".join(lines) + "\n"


def write_credential_store(path: Path, accounts: Iterable[WinRMAccount], hostname: str) -> None:
    """Write the NTLM credential store for `accounts` (mode 0600)."""
    write_private_file(path, credential_store_text(accounts, hostname).encode("utf-8"))


def basic_account(
    authorization: str, accounts: Sequence[WinRMAccount], hostname: str
) -> WinRMAccount | None:
    """The account a ``Basic`` Authorization value proves, or None."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user_part, sep, password = decoded.partition(":")
    if not sep:
        return None
    domain, username = split_principal(user_part)
    account = find_account(accounts, domain, username, hostname)
    if account is None:
        # Compare anyway so an unknown user costs the same as a wrong password.
        hmac.compare_digest(password.encode(), b"relayguard-lab-no-such-user")
        return None
    if hmac.compare_digest(password.encode("utf-8"), account.password.encode("utf-8")):
        return account
    return None


def tls_server_end_point(certificate_pem: bytes) -> GssChannelBindings:
    """The channel binding of a server certificate (RFC 5929 §4.1, as requests_ntlm sends)."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    algorithm = certificate.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate.public_bytes(Encoding.DER))
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest.finalize())


# One process environment, many twins: see the module docstring.
_store_lock = threading.Lock()


@contextmanager
def _credential_store(path: Path) -> Iterator[None]:
    with _store_lock:
        previous = os.environ.get(NTLM_USER_FILE)
        os.environ[NTLM_USER_FILE] = str(path)
        try:
            yield
        finally:
            # Never delete the key: another thread may be iterating os.environ (requests
            # does, for proxy settings), and a key vanishing mid-iteration raises there.
            os.environ[NTLM_USER_FILE] = previous if previous is not None else ""


def ntlm_message_type(token: bytes) -> int | None:
    """1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE ([MS-NLMP] 2.2.1), None if not NTLM."""
    if len(token) < 12 or not token.startswith(b"NTLMSSP\x00"):
        return None
    return int.from_bytes(token[8:12], "little")


class NtlmAcceptor:
    """One NTLM authentication (and afterwards, the session's sealing keys)."""

    def __init__(self, credential_store: Path, channel_bindings: GssChannelBindings | None) -> None:
        self._store = credential_store
        with _credential_store(credential_store):
            self._context = spnego.server(
                protocol="ntlm", service="http", channel_bindings=channel_bindings
            )

    def step(self, token: bytes) -> bytes | None:
        """Process a client token; returns the token to send back (the CHALLENGE) or None."""
        try:
            with _credential_store(self._store):
                return self._context.step(token)
        except Exception as exc:  # pyspnego raises several types, all mean "refused"
            raise AuthenticationFailed(
                f"NTLM authentication refused ({type(exc).__name__})"
            ) from None

    @property
    def complete(self) -> bool:
        return bool(self._context.complete)

    @property
    def client_principal(self) -> str:
        return str(self._context.client_principal or "")

    def wrap(self, data: bytes) -> bytes:
        """Seal `data`: the 16-byte signature followed by the sealed bytes."""
        return bytes(self._context.wrap(data, encrypt=True).data)

    def unwrap(self, data: bytes) -> bytes:
        """Verify and unseal signature + sealed bytes."""
        return bytes(self._context.unwrap(data).data)
