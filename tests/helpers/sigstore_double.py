"""A loopback Sigstore for the provenance tests: Fulcio + CT log + Rekor v1 on 127.0.0.1.

Production Sigstore cannot be reached from CI, so signing goes through the real sigstore-python
code path against this double instead. Everything it issues chains to keys made per test session,
published in a trusted root that the tests hand to each verifier (ours, gh, sigstore-js).

It also plays two GitHub endpoints: the Actions OIDC token request URL (GET /token, what
``detect_credential()`` calls) and the repository attestations API (POST
/repos/<o>/<r>/attestations), which is GitHub's own service and cannot run here.

What it implements:
  * Fulcio  POST /api/v2/signingCert   -> leaf cert with Fulcio OID extensions and
                                           an embedded precert SCT signed by a fake CT log key
  * Rekor   POST /api/v1/log/entries    -> dsse/0.0.1 or hashedrekord/0.0.1 entry with
                                           integratedTime, SET (inclusion promise),
                                           inclusion proof and a signed checkpoint
  * trusted_root.json / signing_config / ClientTrustConfig generation
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import jwt
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.UTC
ORG = "pixi-pack-test-sigstore"  # Issuer O= of the leaf; gh matches custom roots on this


def spki_der(pub) -> bytes:
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(pub) -> bytes:
    return hashlib.sha256(spki_der(pub)).digest()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def der_utf8(s: str) -> bytes:
    raw = s.encode()
    # DER UTF8String (tag 0x0C) with definite length
    n = len(raw)
    if n < 0x80:
        return b"\x0c" + bytes([n]) + raw
    lb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x0c" + bytes([0x80 | len(lb)]) + lb + raw


def der_octet_string(raw: bytes) -> bytes:
    n = len(raw)
    if n < 0x80:
        return b"\x04" + bytes([n]) + raw
    lb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x04" + bytes([0x80 | len(lb)]) + lb + raw


OID = lambda n: x509.ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{n}")  # noqa: E731
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def github_extensions(c: dict) -> tuple[str, list[tuple[x509.ObjectIdentifier, bytes]]]:
    """Mirror fulcio config/identity/config.yaml `github-workflow` templates."""
    url = "https://github.com"
    san = f"{url}/{c['job_workflow_ref']}"
    ext = [
        (OID(1), c["iss"].encode()),  # Issuer (v1, raw)
        (OID(2), c["event_name"].encode()),  # deprecated GitHub OIDs, raw
        (OID(3), c["sha"].encode()),
        (OID(4), c["workflow"].encode()),
        (OID(5), c["repository"].encode()),
        (OID(6), c["ref"].encode()),
        (OID(8), der_utf8(c["iss"])),  # IssuerV2
        (OID(9), der_utf8(san)),  # BuildSignerURI
        (OID(10), der_utf8(c["job_workflow_sha"])),
        (OID(11), der_utf8(c["runner_environment"])),
        (OID(12), der_utf8(f"{url}/{c['repository']}")),
        (OID(13), der_utf8(c["sha"])),
        (OID(14), der_utf8(c["ref"])),
        (OID(15), der_utf8(c["repository_id"])),
        (OID(16), der_utf8(f"{url}/{c['repository_owner']}")),
        (OID(17), der_utf8(c["repository_owner_id"])),
        (OID(18), der_utf8(f"{url}/{c['workflow_ref']}")),
        (OID(19), der_utf8(c["workflow_sha"])),
        (OID(20), der_utf8(c["event_name"])),
        (OID(21), der_utf8(f"{url}/{c['repository']}/actions/runs/{c['run_id']}/attempts/{c['run_attempt']}")),
        (OID(22), der_utf8(c["repository_visibility"])),
    ]
    return san, ext


def gitlab_extensions(c: dict) -> tuple[str, list[tuple[x509.ObjectIdentifier, bytes]]]:
    """Mirror fulcio `gitlab-pipeline` templates."""
    url = "https://gitlab.com"
    san = f"https://{c['ci_config_ref_uri']}"
    ref = f"refs/{'heads/' if c['ref_type'] == 'branch' else 'tags/'}{c['ref']}"
    ext = [
        (OID(1), c["iss"].encode()),
        (OID(8), der_utf8(c["iss"])),
        (OID(9), der_utf8(san)),
        (OID(10), der_utf8(c["ci_config_sha"])),
        (OID(11), der_utf8(c["runner_environment"])),
        (OID(12), der_utf8(f"{url}/{c['project_path']}")),
        (OID(13), der_utf8(c["sha"])),
        (OID(14), der_utf8(ref)),
        (OID(15), der_utf8(c["project_id"])),
        (OID(16), der_utf8(f"{url}/{c['namespace_path']}")),
        (OID(17), der_utf8(c["namespace_id"])),
        (OID(18), der_utf8(san)),
        (OID(19), der_utf8(c["ci_config_sha"])),
        (OID(20), der_utf8(c["pipeline_source"])),
        (OID(21), der_utf8(f"{url}/{c['project_path']}/-/jobs/{c['job_id']}")),
        (OID(22), der_utf8(c["project_visibility"])),
    ]
    return san, ext


#: Entries already in the fake log when it starts, so the first real entry has this index.
#: sigstore-go <= 0.7.1 (so cosign <= 2.5.0) rejects a logIndex of 0 as "nil value in transaction
#: log entry" (protobuf's zero value), and production Rekor never issues one. Not a power of two,
#: so inclusion proofs have uneven subtrees from the first signature on.
FIRST_LOG_INDEX = 37


class Merkle:
    """RFC 6962 Merkle tree with inclusion proofs (same algorithm as Trillian/Rekor)."""

    def __init__(self, prefilled: int = 0) -> None:
        self.leaves: list[bytes] = [self.leaf_hash(b"earlier entry %d" % i) for i in range(prefilled)]

    @staticmethod
    def leaf_hash(data: bytes) -> bytes:
        return hashlib.sha256(b"\x00" + data).digest()

    @staticmethod
    def node(l: bytes, r: bytes) -> bytes:  # noqa: E741
        return hashlib.sha256(b"\x01" + l + r).digest()

    def _root(self, hs: list[bytes]) -> bytes:
        if len(hs) == 1:
            return hs[0]
        k = 1 << ((len(hs) - 1).bit_length() - 1)
        return self.node(self._root(hs[:k]), self._root(hs[k:]))

    def _path(self, m: int, hs: list[bytes]) -> list[bytes]:
        if len(hs) == 1:
            return []
        k = 1 << ((len(hs) - 1).bit_length() - 1)
        if m < k:
            return [*self._path(m, hs[:k]), self._root(hs[k:])]
        return [*self._path(m - k, hs[k:]), self._root(hs[:k])]

    def append(self, data: bytes) -> int:
        self.leaves.append(self.leaf_hash(data))
        return len(self.leaves) - 1

    def root(self) -> bytes:
        return self._root(self.leaves)

    def proof(self, idx: int) -> list[bytes]:
        return self._path(idx, self.leaves)


class FakeSigstore:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        now = dt.datetime.now(UTC)
        self.not_before = now - dt.timedelta(days=1)
        # Fulcio root CA (no intermediate: keeps gh's issuer-organisation matching simple)
        self.ca_key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                x509.NameAttribute(NameOID.COMMON_NAME, "fake-fulcio-root"),
            ]
        )
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA384())
        )
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_log_id = key_id(self.rekor_key.public_key())
        self.tree = Merkle(prefilled=FIRST_LOG_INDEX)
        self.lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self.fulcio_url = self.rekor_url = ""
        self.github_token = ""  # served by GET /token
        self.token_requests: list[str] = []  # paths of GET /token calls (audience check)
        self.uploads: list[dict] = []  # bodies POSTed to the attestations API
        self.stored: list[tuple[str, dict]] = []  # (owner/repo, bundle) that GET then lists
        self.upload_status = 201
        self.upload_auth: list[str] = []

    # ---------------- Fulcio ----------------
    def _sct(self, tbs: bytes, ts_ms: int) -> bytes:
        issuer_key_hash = key_id(self.ca_key.public_key())
        signed = (
            struct.pack("!BBQH", 0, 0, ts_ms, 1)  # v1, certificate_timestamp, ts, precert_entry
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", 0)  # no extensions
        )
        sig = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack("!B", 0)
            + key_id(self.ct_key.public_key())
            + struct.pack("!Q", ts_ms)
            + struct.pack("!H", 0)  # extensions
            + struct.pack("!BBH", 4, 3, len(sig))
            + sig  # sha256, ecdsa
        )
        lst = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(lst)) + lst

    def issue_cert(self, csr_pem: bytes, token: str) -> list[str]:
        claims = jwt.decode(token, options={"verify_signature": False}, audience="sigstore")
        csr = x509.load_pem_x509_csr(csr_pem)
        assert csr.is_signature_valid  # proof of possession
        if claims["iss"].startswith("https://token.actions.githubusercontent.com"):
            san, exts = github_extensions(claims)
        elif claims["iss"] == "https://gitlab.com":
            san, exts = gitlab_extensions(claims)
        else:
            raise ValueError(f"unsupported issuer {claims['iss']}")
        now = dt.datetime.now(UTC).replace(microsecond=0)
        serial = x509.random_serial_number()

        def builder():
            b = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self.ca_cert.subject)
                .public_key(csr.public_key())
                .serial_number(serial)
                .not_valid_before(now)
                .not_valid_after(now + dt.timedelta(minutes=10))
                .add_extension(
                    x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
                )
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
                )
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=True)
            )
            for oid, val in exts:
                b = b.add_extension(x509.UnrecognizedExtension(oid, val), critical=False)
            return b

        pre = builder().sign(self.ca_key, hashes.SHA384())
        sct_list = self._sct(pre.tbs_certificate_bytes, int(time.time() * 1000))
        final = (
            builder()
            .add_extension(x509.UnrecognizedExtension(SCT_LIST_OID, der_octet_string(sct_list)), critical=False)
            .sign(self.ca_key, hashes.SHA384())
        )
        assert final.tbs_precertificate_bytes == pre.tbs_certificate_bytes
        pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
        return [pem(final), pem(self.ca_cert)]

    # ---------------- Rekor v1 ----------------
    def _canonical_body(self, proposed: dict) -> bytes:
        kind = proposed["kind"]
        if kind == "dsse":
            pc = proposed["spec"]["proposedContent"]
            env = json.loads(pc["envelope"])
            payload = base64.b64decode(env["payload"])
            body = {
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "envelopeHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(pc["envelope"].encode()).hexdigest(),
                    },
                    "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                    "signatures": [{"signature": s["sig"], "verifier": pc["verifiers"][0]} for s in env["signatures"]],
                },
            }
        elif kind == "hashedrekord":
            body = proposed  # already in canonical shape for v0.0.1
        else:
            raise ValueError(kind)
        return rfc8785.dumps(body)

    def add_entry(self, proposed: dict) -> dict:
        body = self._canonical_body(proposed)
        with self.lock:
            idx = self.tree.append(body)
            size = len(self.tree.leaves)
            root = self.tree.root()
            path = self.tree.proof(idx)
        integrated = int(time.time())
        log_id_hex = self.rekor_log_id.hex()
        set_payload = rfc8785.dumps(
            {"body": b64(body), "integratedTime": integrated, "logID": log_id_hex, "logIndex": idx}
        )
        set_sig = self.rekor_key.sign(set_payload, ec.ECDSA(hashes.SHA256()))
        # Signer name must be a substring (regex) of the tlog baseUrl: sigstore-js checks
        # `tlog.baseURL.match(signature.name)`; real Rekor uses "rekor.sigstore.dev".
        name = urlparse(self.rekor_url).hostname
        note = f"{name} - 1234567890\n{size}\n{b64(root)}\n"
        cp_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = note + "\n" + f"\u2014 {name} {b64(self.rekor_log_id[:4] + cp_sig)}\n"
        uuid = Merkle.leaf_hash(body).hex()
        return {
            uuid: {
                "body": b64(body),
                "integratedTime": integrated,
                "logID": log_id_hex,
                "logIndex": idx,
                "verification": {
                    "signedEntryTimestamp": b64(set_sig),
                    "inclusionProof": {
                        "checkpoint": checkpoint,
                        "hashes": [h.hex() for h in path],
                        "logIndex": idx,
                        "rootHash": root.hex(),
                        "treeSize": size,
                    },
                },
            }
        }

    # ---------------- GitHub attestations API (read side) ----------------
    def list_attestations(self, path: str) -> dict:
        """GET /repos/<o>/<r>/attestations/sha256:<hex>: the stored bundles of that repository
        whose statement names the digest, as GitHub's REST API lists them for gh."""
        parts = urlparse(path).path.split("/")
        repo, digest = f"{parts[2]}/{parts[3]}", parts[5].removeprefix("sha256:")
        found = []
        for stored_repo, bundle in self.stored:
            statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
            if stored_repo == repo and any(s["digest"].get("sha256") == digest for s in statement["subject"]):
                # gh keeps only attestations a user's workflow made ("initiator": "user").
                found.append({"bundle": bundle, "repository_id": 123456, "initiator": "user"})
        return {"attestations": found}

    # ---------------- trust material ----------------
    def trusted_root(self) -> dict:
        start = self.not_before.strftime("%Y-%m-%dT%H:%M:%SZ")

        def pk(k):
            return {
                "rawBytes": b64(spki_der(k.public_key())),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": start},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                {
                    "baseUrl": self.rekor_url,
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": pk(self.rekor_key),
                    "logId": {"keyId": b64(self.rekor_log_id)},
                }
            ],
            "certificateAuthorities": [
                {
                    "subject": {"organization": ORG, "commonName": "fake-fulcio-root"},
                    "uri": self.fulcio_url,
                    "certChain": {
                        "certificates": [{"rawBytes": b64(self.ca_cert.public_bytes(serialization.Encoding.DER))}]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [
                {
                    "baseUrl": "http://fake-ctlog.invalid",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": pk(self.ct_key),
                    "logId": {"keyId": b64(key_id(self.ct_key.public_key()))},
                }
            ],
            "timestampAuthorities": [],
        }

    def signing_config(self) -> dict:
        start = self.not_before.strftime("%Y-%m-%dT%H:%M:%SZ")
        svc = lambda url: {"url": url, "majorApiVersion": 1, "validFor": {"start": start}, "operator": "fake"}  # noqa: E731
        return {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [svc(self.fulcio_url)],
            "oidcUrls": [],
            "rekorTlogUrls": [svc(self.rekor_url)],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        }

    def client_trust_config(self) -> dict:
        return {
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": self.trusted_root(),
            "signingConfig": self.signing_config(),
        }

    # ---------------- HTTP plumbing ----------------
    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _json(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                # Emulates the GitHub Actions OIDC token endpoint used by `id.detect_github`:
                # GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=sigstore -> {"value": "<jwt>"}
                if self.path.startswith("/token"):
                    fake.token_requests.append(self.path)
                    self._json(200, {"value": fake.github_token})
                elif self.path.startswith("/repos/") and "/attestations/" in self.path:
                    self._json(200, fake.list_attestations(self.path))
                else:
                    self._json(404, {"code": 404, "message": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    if self.path == "/api/v2/signingCert":
                        tok = self.headers["Authorization"].removeprefix("Bearer ")
                        csr = base64.b64decode(body["certificateSigningRequest"])
                        chain = fake.issue_cert(csr, tok)
                        self._json(201, {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}})
                    elif self.path == "/api/v1/log/entries":
                        self._json(201, fake.add_entry(body))
                    elif self.path.startswith("/repos/") and self.path.endswith("/attestations"):
                        fake.uploads.append(body)
                        fake.stored.append((self.path.split("/")[2] + "/" + self.path.split("/")[3], body["bundle"]))
                        fake.upload_auth.append(self.headers.get("Authorization", ""))
                        if fake.upload_status == 201:
                            self._json(201, {"id": 1000 + len(fake.uploads)})
                        else:
                            self._json(fake.upload_status, {"message": "Resource not accessible by integration"})
                    else:
                        self._json(404, {"code": 404, "message": "not found"})
                except Exception as e:  # pragma: no cover
                    self._json(400, {"code": 400, "message": repr(e)})

        srv = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self._servers.append(srv)
        base = f"http://{self.host}:{srv.server_address[1]}"
        self.fulcio_url = self.rekor_url = base  # one server serves both APIs

    def stop(self) -> None:
        for s in self._servers:
            s.shutdown()


def fake_github_token(
    owner="acme",
    repo="pixi-app",
    workflow=".github/workflows/release.yml",
    ref="refs/heads/main",
    sha="0" * 40,
    job_workflow_ref: str | None = None,
) -> str:
    """A GitHub Actions OIDC token. ``job_workflow_ref`` names the reusable workflow that runs the
    job when it is not the caller's own (slsa-github-generator's, say); it becomes the SAN."""
    now = int(time.time())
    claims = {
        "iss": "https://token.actions.githubusercontent.com",
        "aud": "sigstore",
        "sub": f"repo:{owner}/{repo}:ref:{ref}",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "ref": ref,
        "sha": sha,
        "repository": f"{owner}/{repo}",
        "repository_owner": owner,
        "repository_id": "123456",
        "repository_owner_id": "654321",
        "repository_visibility": "public",
        "event_name": "push",
        "workflow": "release",
        "run_id": "42",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "workflow_ref": f"{owner}/{repo}/{workflow}@{ref}",
        "workflow_sha": sha,
        "job_workflow_ref": job_workflow_ref or f"{owner}/{repo}/{workflow}@{ref}",
        "job_workflow_sha": sha,
    }
    return jwt.encode(claims, "not-a-real-key-only-for-the-loopback-sigstore", algorithm="HS256")


def fake_gitlab_token(project="acme/pixi-app", ref="main", sha="0" * 40) -> str:
    now = int(time.time())
    ns = project.rsplit("/", 1)[0]
    claims = {
        "iss": "https://gitlab.com",
        "aud": "sigstore",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "sub": f"project_path:{project}:ref_type:branch:ref:{ref}",
        "project_path": project,
        "project_id": "777",
        "namespace_path": ns,
        "namespace_id": "888",
        "ref": ref,
        "ref_type": "branch",
        "sha": sha,
        "pipeline_source": "push",
        "job_id": "999",
        "runner_environment": "gitlab-hosted",
        "project_visibility": "public",
        "ci_config_ref_uri": f"gitlab.com/{project}//.gitlab-ci.yml@refs/heads/{ref}",
        "ci_config_sha": sha,
    }
    return jwt.encode(claims, "not-a-real-key-only-for-the-loopback-sigstore", algorithm="HS256")
