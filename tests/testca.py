"""A certificate authority of the test's own, made with the system's openssl: a CA, and a leaf
certificate for 127.0.0.1 and localhost signed by it.

Clients trust the CA precisely (curl ``--cacert``, ``ssl.create_default_context(cafile=…)``) or
the leaf's public key alone (Chromium's ``--ignore-certificate-errors-spki-list``), never "any
certificate": a test that turns verification off cannot notice a certificate nginx serves wrong
(the wrong file, a missing name, no chain).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: ECDSA P-256 keys: made in milliseconds (RSA 2048 takes up to a second), and what browsers take.
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
LEAF_NAMES = "IP:127.0.0.1,DNS:localhost"


@dataclass(frozen=True)
class LocalCA:
    """The files of a test CA under one directory (PEM)."""

    ca_certificate: Path
    leaf_certificate: Path
    leaf_key: Path

    def leaf_spki_sha256(self) -> str:
        """base64 of the SHA-256 of the leaf's SubjectPublicKeyInfo (DER): the form Chromium's
        ``--ignore-certificate-errors-spki-list`` and HPKP pins take."""
        return spki_sha256(self.leaf_certificate)

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this CA only, and checks the host name."""
        return ssl.create_default_context(cafile=str(self.ca_certificate))


def make_local_ca(directory: Path) -> LocalCA:
    """Write ``ca.crt`` (with its ``ca.key``), ``leaf.crt`` and ``leaf.key`` into ``directory``:
    the leaf is valid for a day, for 127.0.0.1 and localhost, as a TLS server only."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    leaf_key, leaf_csr, leaf_cert = (directory / name for name in ("leaf.key", "leaf.csr",
                                                                   "leaf.crt"))
    _openssl("req", "-x509", *_KEY, "-days", "2", "-subj", "/CN=eventgate test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", ca_key, "-out", ca_cert)
    _openssl("req", "-new", *_KEY, "-subj", "/CN=127.0.0.1", "-keyout", leaf_key, "-out", leaf_csr)
    extensions = directory / "leaf.ext"
    extensions.write_text(
        f"subjectAltName={LEAF_NAMES}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("x509", "-req", "-in", leaf_csr, "-CA", ca_cert, "-CAkey", ca_key,
             "-set_serial", str(secrets.randbits(63)), "-days", "1", "-sha256",
             "-extfile", extensions, "-out", leaf_cert)
    return LocalCA(ca_cert, leaf_cert, leaf_key)


def spki_sha256(certificate: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo DER)) of a PEM certificate."""
    pem = _openssl("x509", "-in", certificate, "-pubkey", "-noout")
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    return base64.b64encode(hashlib.sha256(base64.b64decode(body)).digest()).decode()


def _openssl(*args: object) -> str:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                            timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args[:2]))} failed:\n{result.stderr}")
    return result.stdout
