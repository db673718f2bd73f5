"""AWS Signature Version 4 for S3 requests, header form.

Hand-written (about forty lines) rather than borrowed from botocore, whose S3 signer insists
on hashing a request body it holds itself; callrec streams bodies with httpx and hashes
uploads while spooling them. ``tests/test_storage_s3.py`` checks it against AWS's published
example and against botocore.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from pydantic import SecretStr

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: SecretStr
    session_token: SecretStr | None = None


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """RFC 3986 encoding as SigV4 wants it: only ``A-Za-z0-9-_.~`` (and ``/`` in paths) kept."""
    return quote(text, safe="/~" if keep_slash else "~")


def canonical_query(params: Mapping[str, str]) -> str:
    pairs = sorted(
        (uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False))
        for k, v in params.items()
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    credentials: Credentials,
    *,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_sha256: str,
    region: str,
    now: datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The headers to send: ``headers`` plus Host, the date, the payload hash and the
    Authorization. ``path`` is already URI-encoded (S3 encodes it once, not twice)."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    out = {
        **headers,
        "Host": host,
        "X-Amz-Date": stamp,
        "X-Amz-Content-SHA256": payload_sha256,
    }
    if credentials.session_token is not None:
        out["X-Amz-Security-Token"] = credentials.session_token.get_secret_value()
    signed = {k.lower(): " ".join(str(v).split()) for k, v in out.items()}
    names = ";".join(sorted(signed))
    canonical = "\n".join(
        [
            method.upper(),
            path,
            canonical_query(query),
            "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
            names,
            payload_sha256,
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + credentials.secret_access_key.get_secret_value()).encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return out
