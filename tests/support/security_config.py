"""Users, roles and settings for the secured test node (OpenSearch security plugin).

Three accounts, each with a random password made per run (so a test can search logs for it):
- `admin`: the plugin's `all_access` role; seeds the indices and sees everything.
- `reader-a`: may read index `secure-a` only.
- `restricted-a`: may read `secure-a` only, and there only documents whose `visibility` is
  `public` (document-level security) and never the field `secret` (field-level security).
Index `secure-b` is readable by `admin` alone.

The security plugin reads its YAML files with a YAML 1.1 parser, which accepts JSON, so the
files are written as JSON: no YAML library and no quoting rules to get wrong.

Example:
    >>> accounts = make_accounts()
    >>> sorted(accounts)
    ['admin', 'reader-a', 'restricted-a']
    >>> accounts["reader-a"].roles
    ('secure_read_a',)
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.support.tls import TestPki

INDEX_A = "secure-a"
INDEX_B = "secure-b"
HIDDEN_FIELD = "secret"
VISIBLE_VALUE = "public"
# DLS filter: what `restricted-a` may see in INDEX_A.
DLS_QUERY = {"term": {"visibility": VISIBLE_VALUE}}

INDEX_MAPPING = {
    "properties": {
        "title": {"type": "text"},
        "body": {"type": "text"},
        "visibility": {"type": "keyword"},
        HIDDEN_FIELD: {"type": "text"},
    }
}
# Every document mentions "reranking", so one match query reaches them all; every hidden
# field holds "tangerine", so a search on it shows whether field-level security holds.
SEED_DOCS = {
    INDEX_A: {
        "a-public-1": {"title": "Public note on reranking", "body": "cross encoder reranking of bm25 candidates",
                       "visibility": "public", HIDDEN_FIELD: "tangerine launch code one"},
        "a-public-2": {"title": "Reranking windows", "body": "reranking windows, deadlines and fallbacks",
                       "visibility": "public", HIDDEN_FIELD: "tangerine launch code two"},
        "a-restricted-1": {"title": "Restricted budget", "body": "reranking budget of the restricted project",
                           "visibility": "restricted", HIDDEN_FIELD: "tangerine launch code three"},
        "a-restricted-2": {"title": "Restricted roadmap", "body": "restricted reranking roadmap",
                           "visibility": "restricted", HIDDEN_FIELD: "tangerine launch code four"},
    },
    INDEX_B: {
        "b-1": {"title": "Index b note", "body": "reranking notes kept in index b",
                "visibility": "public", HIDDEN_FIELD: "tangerine launch code five"},
        "b-2": {"title": "Index b plan", "body": "another reranking plan in index b",
                "visibility": "public", HIDDEN_FIELD: "tangerine launch code six"},
    },
}

ROLES = {
    "secure_read_a": {
        "cluster_permissions": ["cluster_composite_ops_ro"],
        "index_permissions": [{"index_patterns": [INDEX_A], "allowed_actions": ["read", "indices:admin/mappings/get"]}],
    },
    "secure_restricted_a": {
        "cluster_permissions": ["cluster_composite_ops_ro"],
        "index_permissions": [{
            "index_patterns": [INDEX_A],
            "dls": json.dumps(DLS_QUERY),
            "fls": [f"~{HIDDEN_FIELD}"],
            "allowed_actions": ["read", "indices:admin/mappings/get"],
        }],
    },
}

AUTH_CONFIG = {
    "dynamic": {
        "http": {"anonymous_auth_enabled": False},
        "authc": {
            "basic_internal_auth_domain": {
                "description": "HTTP basic auth against the internal users of internal_users.yml",
                "http_enabled": True,
                "transport_enabled": True,
                "order": 0,
                "http_authenticator": {"type": "basic", "challenge": True},
                "authentication_backend": {"type": "intern"},
            }
        },
    }
}


@dataclass(frozen=True)
class Account:
    """One internal user of the secured node."""

    name: str
    password: str
    roles: tuple[str, ...]

    @property
    def authorization(self) -> str:
        """The `Authorization` header value for HTTP basic auth.

        Example:
            >>> Account("u", "p", ()).authorization
            'Basic dTpw'
        """
        return "Basic " + base64.b64encode(f"{self.name}:{self.password}".encode()).decode()

    def __repr__(self) -> str:  # keep passwords out of pytest's failure output
        return f"Account(name={self.name!r}, roles={self.roles!r})"


def make_accounts() -> dict[str, Account]:
    """The three test accounts with fresh random passwords.

    Example:
        >>> a, b = make_accounts(), make_accounts()
        >>> a["admin"].password != b["admin"].password
        True
    """
    def password() -> str:
        return "pw-" + secrets.token_urlsafe(18)

    return {
        "admin": Account("admin", password(), ("all_access",)),
        "reader-a": Account("reader-a", password(), ("secure_read_a",)),
        "restricted-a": Account("restricted-a", password(), ("secure_restricted_a",)),
    }


def write_security_config(security_dir: Path, accounts: dict[str, Account], hashes: dict[str, str]) -> None:
    """Overwrite the plugin's config.yml, internal_users.yml, roles.yml and roles_mapping.yml.

    `hashes` maps each account name to the bcrypt hash of its password. The plugin's other
    files (action groups, tenants, ...) stay as installed.

    Example:
        >>> accounts = {"u": Account("u", "p", ("secure_read_a",))}
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> write_security_config(d, accounts, {"u": "$2y$12$x"})
        >>> json.loads((d / "roles_mapping.yml").read_text())["secure_read_a"]["users"]
        ['u']
    """
    missing = set(accounts) - set(hashes)
    if missing:
        raise ValueError(f"expected a password hash for every account; none given for {sorted(missing)}")
    users = {
        a.name: {"hash": hashes[a.name], "reserved": False, "description": "es-rerank test user"}
        for a in accounts.values()
    }
    mapping: dict[str, dict] = {}
    for account in accounts.values():
        for role in account.roles:
            mapping.setdefault(role, {"reserved": False, "users": []})["users"].append(account.name)
    files: dict[str, tuple[str, dict]] = {
        "config.yml": ("config", {"config": AUTH_CONFIG}),
        "internal_users.yml": ("internalusers", users),
        "roles.yml": ("roles", ROLES),
        "roles_mapping.yml": ("rolesmapping", mapping),
    }
    for name, (kind, body) in files.items():
        document = {"_meta": {"type": kind, "config_version": 2}, **body}
        (security_dir / name).write_text(json.dumps(document, indent=2) + "\n")


def node_security_settings(pki: TestPki) -> dict[str, object]:
    """The `plugins.security.*` settings for opensearch.yml: TLS on both layers, our PKI, and
    initialising the security index from the YAML files (no securityadmin run).

    Certificate paths are relative to the node's config directory, where the PKI lives.

    Example:
        >>> node_security_settings(TestPki(Path("x")))["plugins.security.ssl.http.enabled"]
        True
    """
    settings: dict[str, object] = {}
    for layer in ("transport", "http"):
        settings[f"plugins.security.ssl.{layer}.pemcert_filepath"] = pki.node_cert
        settings[f"plugins.security.ssl.{layer}.pemkey_filepath"] = pki.node_key
        settings[f"plugins.security.ssl.{layer}.pemtrustedcas_filepath"] = pki.ca_cert
    settings.update({
        "plugins.security.ssl.http.enabled": True,
        "plugins.security.ssl.transport.enforce_hostname_verification": False,
        "plugins.security.allow_default_init_securityindex": True,
        "plugins.security.authcz.admin_dn": [pki.admin_dn],
        "plugins.security.nodes_dn": [pki.node_dn],
        "plugins.security.restapi.roles_enabled": ["all_access"],
        "plugins.security.system_indices.enabled": True,
        # Audit events would land in an index of their own; the tests do not need them.
        "plugins.security.audit.type": "noop",
    })
    return settings


def append_settings(opensearch_yml: Path, settings: dict[str, object]) -> None:
    """Append `key: value` lines (values JSON-encoded, which YAML reads as is) to opensearch.yml.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "opensearch.yml"
        >>> append_settings(f, {"a.b": ["x"], "c": True})
        >>> f.read_text()
        '\\na.b: ["x"]\\nc: true\\n'
    """
    lines = "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
    with opensearch_yml.open("a") as out:
        out.write("\n" + lines)
