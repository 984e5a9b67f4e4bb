"""Throwaway TLS material for a test node: a CA, a node certificate and an admin certificate.

Made with the `openssl` command at test time, valid for two days, and never committed.
The node certificate serves both HTTP and transport (server and client auth) for
127.0.0.1 and localhost; the admin certificate is the security plugin's super admin.

Example:
    >>> pki = make_test_pki(Path(tempfile.mkdtemp()))   # doctest: +SKIP
    >>> pki.node_dn   # doctest: +SKIP
    'CN=es-rerank-secure-node'
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from es_rerank.engine.local_node.fetch import require_tool

NODE_CN = "es-rerank-secure-node"
ADMIN_CN = "es-rerank-secure-admin"
VALID_DAYS = 2

NODE_EXTENSIONS = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""
ADMIN_EXTENSIONS = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
"""


@dataclass(frozen=True)
class TestPki:
    """File names (relative to the directory they were written to) and the DNs the node needs."""

    __test__ = False  # not a pytest test class despite its name

    directory: Path
    ca_cert: str = "root-ca.pem"
    node_cert: str = "node.pem"
    node_key: str = "node-key.pem"
    admin_cert: str = "admin.pem"
    admin_key: str = "admin-key.pem"
    node_dn: str = f"CN={NODE_CN}"
    admin_dn: str = f"CN={ADMIN_CN}"

    def path(self, name: str) -> Path:
        """Absolute path of one of the files above.

        Example:
            >>> TestPki(Path("/x")).path("root-ca.pem").as_posix()
            '/x/root-ca.pem'
        """
        return self.directory / name


def make_test_pki(directory: Path) -> TestPki:
    """Write a fresh CA, node and admin certificate with PKCS#8 keys into `directory`.

    Example:
        >>> make_test_pki(Path(tempfile.mkdtemp())).path("node.pem").exists()   # doctest: +SKIP
        True
    """
    openssl = require_tool("openssl", "to make the test node's TLS certificates", "install openssl (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    pki = TestPki(directory)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        ca_key = scratch / "ca-key.pem"
        _new_key(openssl, ca_key)
        _run(openssl, "req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", str(VALID_DAYS),
             "-subj", "/CN=es-rerank throwaway test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", pki.path(pki.ca_cert))
        for cn, cert, key, extensions in (
            (NODE_CN, pki.node_cert, pki.node_key, NODE_EXTENSIONS),
            (ADMIN_CN, pki.admin_cert, pki.admin_key, ADMIN_EXTENSIONS),
        ):
            _new_key(openssl, pki.path(key))
            csr = scratch / f"{cn}.csr"
            ext_file = scratch / f"{cn}.ext"
            ext_file.write_text(extensions)
            _run(openssl, "req", "-new", "-key", pki.path(key), "-subj", f"/CN={cn}", "-out", csr)
            _run(openssl, "x509", "-req", "-in", csr, "-CA", pki.path(pki.ca_cert), "-CAkey", ca_key,
                 "-set_serial", str(secrets.randbits(63)), "-days", str(VALID_DAYS), "-sha256",
                 "-extfile", ext_file, "-out", pki.path(cert))
    return pki


def _new_key(openssl: str, out: Path) -> None:
    # genpkey writes PKCS#8, the only PEM key format the security plugin reads.
    _run(openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", out)


def _run(openssl: str, *args: object) -> None:
    result = subprocess.run([openssl, *map(str, args)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed with status {result.returncode}: {result.stderr.strip()}")
