"""`relayguard probe --ports 25,587,465` against one real Postfix with three listeners.

The instance (127.0.4.5) is the `closed` profile on port 25; master.cf adds a submission
service on 587 that demands STARTTLS (`smtpd_tls_security_level=encrypt`, so MAIL in plaintext
is answered "530 5.7.0 Must issue a STARTTLS command first") and an implicit-TLS service on 465
(`smtpd_tls_wrappermode=yes`, RFC 8314 §3.3); both relay for anyone
(`-o mynetworks=0.0.0.0/0` with `permit_mynetworks` first). The certificate is
self-signed, made here with `cryptography`: the probe records it and never trusts it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relayguard.lab.postfix.instance import PostfixInstance
from relayguard.vocabulary import Verdict

from .conftest import PROBE_SOURCE
from .harness import run_probe

pytestmark = [pytest.mark.realserver, pytest.mark.root]

ADDRESS = "127.0.4.5"
EXIT_OPEN = 2
# smtpd refuses to start without some reject_unauth_destination: trust every client instead
_RELAY_FOR_ANYONE = (
    "-o smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination",
    "-o mynetworks=0.0.0.0/0",
)
SERVICES = {
    587: ("-o smtpd_tls_security_level=encrypt", *_RELAY_FOR_ANYONE),
    465: (
        "-o smtpd_tls_wrappermode=yes",
        "-o smtpd_tls_security_level=encrypt",
        *_RELAY_FOR_ANYONE,
    ),
}


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)  # read by smtpd before it drops privileges
    return cert_file, key_file


@pytest.fixture(scope="module")
def three_port_server(postfix_lab: Path) -> Iterator[PostfixInstance]:
    root = postfix_lab / "three-ports"
    root.mkdir(mode=0o755)
    cert_file, key_file = _self_signed(root, "three-ports.relayguard.test")
    server = PostfixInstance.from_profile(
        root,
        ADDRESS,
        "closed",
        overrides={
            "smtpd_tls_cert_file": str(cert_file),
            "smtpd_tls_key_file": str(key_file),
            "smtpd_tls_security_level": "may",
        },
    )
    try:
        server.create()
        with server.layout.master_cf.open("a", encoding="ascii") as master_cf:
            # smtpd's TLS needs the TLS manager (PRNG, session cache); the lab omits it
            master_cf.write("tlsmgr unix - - n 1000? 1 tlsmgr\n")
            for port, options in SERVICES.items():
                master_cf.write(f"{ADDRESS}:{port} inet n - n - - smtpd\n")
                master_cf.writelines(f"  {option}\n" for option in options)
        server.start()  # master binds every listener before port 25 greets
        yield server
    finally:
        server.remove()


def test_ports_judge_each_listener_on_its_own(three_port_server: PostfixInstance) -> None:
    run = run_probe(ADDRESS, PROBE_SOURCE, "--ports", "25,587,465")

    hosts = {host["target"]: host for host in run.document["hosts"]}
    summary = {t: (h["verdict"], h["reason"]) for t, h in hosts.items()}
    summary["maillog"] = three_port_server.maillog_tail(40)
    assert list(hosts)[:3] == [f"{ADDRESS}:25", f"{ADDRESS}:587", f"{ADDRESS}:465"], summary
    assert hosts[f"{ADDRESS}:25"]["verdict"] == Verdict.CLOSED, summary
    assert hosts[f"{ADDRESS}:587"]["verdict"] == Verdict.OPEN, summary
    assert hosts[f"{ADDRESS}:465"]["verdict"] == Verdict.OPEN, summary
    assert run.returncode == EXIT_OPEN, summary
    # 587 upgraded with STARTTLS, 465 spoke TLS from the first byte; neither was trusted.
    tls_587, tls_465 = hosts[f"{ADDRESS}:587"]["tls"], hosts[f"{ADDRESS}:465"]["tls"]
    assert tls_587["established"] and not tls_587["implicit"], tls_587
    assert tls_465["established"] and tls_465["implicit"], tls_465
    assert "three-ports.relayguard.test" in (tls_465["subject"] or ""), tls_465
    assert hosts[f"{ADDRESS}:465"]["banner"].startswith("three-ports"), hosts[f"{ADDRESS}:465"]


def test_a_530_starttls_demand_is_not_a_refusal(three_port_server: PostfixInstance) -> None:
    # With --no-starttls the first MAIL on 587 meets "530 5.7.0 Must issue a STARTTLS command
    # first" (RFC 3207 §4): that answers nothing about relaying, so the probe upgrades and
    # runs the catalog under TLS instead of calling the port closed.
    run = run_probe(f"{ADDRESS}:587", PROBE_SOURCE, "--no-starttls")

    assert run.host["verdict"] == Verdict.OPEN, (run.summary(), three_port_server.maillog_tail(40))
    assert run.host["tls"]["established"], run.host["tls"]
    said = [text for who, text in run.host["transcript"] if who == "S"]
    assert any("Must issue a STARTTLS command first" in text for text in said), said
