"""AWS Signature Version 4 (callrec.media.sigv4): AWS's published example, and agreement with
botocore's S3 signer on requests of every shape callrec sends."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from pydantic import SecretStr

from callrec.media.sigv4 import EMPTY_SHA256, Credentials, canonical_query, sign, uri_encode

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_the_aws_documentation_example() -> None:
    """ "GET Object" from AWS's "Signature Calculations for the Authorization Header"."""
    headers = sign(
        Credentials(KEY_ID, SecretStr(SECRET)),
        method="GET",
        host="examplebucket.s3.amazonaws.com",
        path="/test.txt",
        query={},
        headers={"Range": "bytes=0-9"},
        payload_sha256=EMPTY_SHA256,
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert headers["X-Amz-Date"] == "20130524T000000Z"
    assert headers["Host"] == "examplebucket.s3.amazonaws.com"


CASES = [
    ("GET", "b/cc1/rec-1/a.mp3", {}, {"Range": "bytes=100-199"}),
    ("HEAD", "b/cc1/rec 1/Grüße vom Band #1 100%+x&y=z;(1).wav", {}, {}),
    ("PUT", "b/k~ey_with-safe.chars", {}, {"Content-Length": "7"}),
    ("DELETE", "b/a/b/c", {}, {}),
    ("GET", "b/", {"list-type": "2", "prefix": "cc1/ x+y", "continuation-token": "a/b=="}, {}),
]


@pytest.mark.parametrize(("method", "key", "query", "extra"), CASES)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//session+token="])
def test_agrees_with_botocore(
    method: str, key: str, query: dict[str, str], extra: dict[str, str], token: str | None
) -> None:
    now = datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC)
    payload = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    creds = Credentials(KEY_ID, SecretStr(SECRET), SecretStr(token) if token else None)
    path = "/" + uri_encode(key, keep_slash=True)
    ours = sign(
        creds,
        method=method,
        host="minio.internal:9000",
        path=path,
        query=query,
        headers=extra,
        payload_sha256=payload,
        region="eu-central-1",
        now=now,
    )
    url = f"http://minio.internal:9000{path}" + (f"?{canonical_query(query)}" if query else "")
    request = AWSRequest(
        method=method, url=url, headers={k: v for k, v in ours.items() if k != "Authorization"}
    )
    request.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
    auth = S3SigV4Auth(BotoCredentials(KEY_ID, SECRET, token), "s3", "eu-central-1")
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    assert ours["Authorization"].endswith(f"Signature={expected}")
    assert (
        f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))},"
        in (ours["Authorization"])
    )
    assert urlsplit(url).path == path  # what is signed is what is sent


def test_session_tokens_are_sent_and_signed() -> None:
    headers = sign(
        Credentials(KEY_ID, SecretStr(SECRET), SecretStr("tok")),
        method="GET",
        host="h",
        path="/b/k",
        query={},
        headers={},
        payload_sha256=EMPTY_SHA256,
        region="us-east-1",
        now=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert headers["X-Amz-Security-Token"] == "tok"
    assert "x-amz-security-token" in headers["Authorization"]


def test_the_secret_is_never_part_of_the_headers() -> None:
    headers = sign(
        Credentials(KEY_ID, SecretStr(SECRET)),
        method="GET",
        host="h",
        path="/b/k",
        query={},
        headers={},
        payload_sha256=EMPTY_SHA256,
        region="us-east-1",
        now=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert SECRET not in repr(headers)
    assert SECRET not in repr(Credentials(KEY_ID, SecretStr(SECRET)))


@pytest.mark.parametrize(
    ("text", "keep_slash", "encoded"),
    [
        ("a/b c", True, "a/b%20c"),
        ("a/b c", False, "a%2Fb%20c"),
        ("~-_.", False, "~-_."),
        ("+&=;", True, "%2B%26%3D%3B"),
        ("ü", True, "%C3%BC"),
    ],
)
def test_uri_encoding(text: str, keep_slash: bool, encoded: str) -> None:
    assert uri_encode(text, keep_slash=keep_slash) == encoded
