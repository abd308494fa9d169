"""TLS for the client side: the bridge's own self-signed certificate, or one from config.

Clients of the 2025 API (the reference library among them) talk `https://` to the PVS
with certificate checks off, because the PVS's certificate is self-signed. To stand in
for it the bridge listens with TLS too. Without `server.tls_cert`/`tls_key` it creates a
self-signed certificate on first start and keeps it in `server.state_dir`, so clients
that pin it see the same one after a restart. The key file is written with mode 0600,
both atomically (see `statefiles`); a pair that cannot be loaded (cut short by a full
disk, garbage, a key that does not match its certificate) is made anew.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from bridge.config import ConfigError, ServerConfig
from bridge.host.statefiles import write_atomically

log = logging.getLogger(__name__)

Write = Callable[..., None]  # as `write_atomically(path, data, mode=...)`

CERT_NAME = "tls-cert.pem"
KEY_NAME = "tls-key.pem"
VALID_DAYS = 3650


def self_signed(
    state_dir: Path,
    hostname: str | None = None,
    *,
    replace: bool = False,
    write: Write = write_atomically,
) -> tuple[Path, Path]:
    """The certificate and key in `state_dir`, created on first use (or when `replace`d)
    and reused after."""
    cert_path, key_path = state_dir / CERT_NAME, state_dir / KEY_NAME
    if not replace and cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    # Imported here: only a bridge that listens with TLS and has no certificate needs it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    name = hostname or socket.gethostname() or "pvs-bridge"
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(name),
        x509.DNSName("localhost"),
        x509.DNSName("sunpowerconsole.com"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first: a cut-short pair is one that does not load, and is made anew.
    write(key_path, key_bytes, mode=0o600)
    write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    log.info("created a self-signed TLS certificate for %s in %s", name, state_dir)
    return cert_path, key_path


def usable_self_signed(state_dir: Path, write: Write = write_atomically) -> ssl.SSLContext:
    """The context of the kept pair, made anew when it does not load (raises OSError when
    it cannot be written, ssl.SSLError when even a new one does not load)."""
    cert_path, key_path = self_signed(state_dir, write=write)
    try:
        return server_context(cert_path, key_path)
    except (OSError, ssl.SSLError) as error:
        log.warning(
            "the TLS certificate in %s cannot be used (%s); making a new one", state_dir, error
        )
    return server_context(*self_signed(state_dir, replace=True, write=write))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server-side TLS context for these files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


def context_from_config(server: ServerConfig, write: Write = write_atomically) -> ssl.SSLContext:
    """The TLS context for `server.listen_tls`: the configured files (never replaced: they
    are the owner's), or the self-signed pair (made anew when unusable). ConfigError when
    neither can be had."""
    if server.tls_cert:
        try:
            return server_context(Path(server.tls_cert), Path(server.tls_key))
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"server.tls_cert: cannot load {server.tls_cert}: {error}") from None
    try:
        return usable_self_signed(Path(server.state_dir), write)
    except OSError as error:
        raise ConfigError(
            f"server.state_dir: cannot keep the TLS certificate in {server.state_dir}: "
            f"{error.strerror or error}"
        ) from None
    except ssl.SSLError as error:
        raise ConfigError(f"the new self-signed TLS certificate does not load: {error}") from None


def fingerprint(cert_path: Path) -> str:
    """The certificate's SHA-256 fingerprint, as `upstream.tls_fingerprint` takes it."""
    import hashlib

    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    return hashlib.sha256(der).hexdigest()
