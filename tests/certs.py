"""Certificates made at test time with the openssl command (EC P-256: quick): a CA, a
server certificate for 127.0.0.1, ::1 and localhost, client certificates, and a second CA
that the server does not trust."""
from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    def __init__(self, root: Path):
        if OPENSSL is None:
            pytest.skip("the openssl command is not installed (apt-get install openssl)")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca("ca")
        self.ca("rogue_ca")
        self.server("server", "ca")

    def path(self, name: str) -> str:
        return str(self.root / name)

    def ca(self, name: str) -> None:
        _run("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", cwd=self.root)

    def _signed(self, name: str, ca: str, subject: str, extensions: str) -> None:
        (self.root / f"{name}.ext").write_text(extensions)
        _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=self.root)
        _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=self.root)

    def server(self, name: str, ca: str, cn: str = "localhost") -> None:
        self._signed(name, ca, f"/CN={cn}", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                     "extendedKeyUsage=serverAuth\n")

    def client(self, name: str, subject: str, ca: str = "ca") -> None:
        self._signed(name, ca, subject, "extendedKeyUsage=clientAuth\n")

    def client_context(self, cert: str | None = None) -> ssl.SSLContext:
        """What an ESME uses: trusts our CA; presents ``cert`` (its name) when given."""
        ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
        ctx.check_hostname = False          # smpplib gives no server name; the CA is checked
        if cert is not None:
            ctx.load_cert_chain(self.path(f"{cert}.pem"), self.path(f"{cert}.key"))
        return ctx
