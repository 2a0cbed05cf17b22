"""SMPP over TLS for ``hlrsmpp bench --tls``: the generator's client context, and a
throw-away certificate for a spawned server (made with the openssl command)."""
from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path


def client_context() -> ssl.SSLContext:
    """TLS 1.2+ without checking the server's certificate: the bench measures throughput
    against a server it was pointed at, often with a throw-away certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def self_signed(directory: Path) -> tuple[str, str]:
    """A certificate and key for 127.0.0.1 (EC P-256, one day) in ``directory``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("--tls with --spawn needs the openssl command to make a certificate")
    cert, key = directory / "bench-cert.pem", directory / "bench-key.pem"
    subprocess.run([openssl, "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)
