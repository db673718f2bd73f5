"""Recordings' JSON as the stores keep it: compressed with zstd against a built-in dictionary.

A stored recording is about 1 KB of JSON. SQLite never compresses a value, and PostgreSQL only
from about 2 KB (fixed when PostgreSQL is built), so the documents were two thirds of the
recordings table as plain text. Compressed on their own they shrink to about a third; most of
what is left is the vocabulary every recording repeats (field names, event and contact types,
time formats), which a dictionary supplies: against the one below, to about a fifth
(``docs/performance.md``). Compressing costs about 4 microseconds per recording, decompressing
one.

Stored form: ``b"{"...`` is plain JSON (stored before schema 7 on PostgreSQL, before
schema 7 on SQLite); ``b"\\x01"`` + a zstd frame
is JSON compressed against ``VOCABULARY``. The vocabulary must never change, or documents
written with it could not be read: a better one gets a tag of its own, and the old one stays
for reading.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import zstandard

# Recordings as callrec stores them, in its field order: what the compressor can refer back to.
# The most common text comes last (nearest the data, so the cheapest to refer to).
VOCABULARY = (
    b'{"id":"011AP643CSAPR4FKQGQE31TAES00029V","callerPhoneNumber":"+14155550100",'
    b'"dialedPhoneNumber":"18005550199","startTime":"2024-03-11T09:15:02.000+0000",'
    b'"stopTime":"2024-03-11T09:21:47.000+0000","mediaFiles":[{"mediaId":'
    b'"011AP643CSAPR4FKQGQE31TAES00029V_2024-03-11_09-15-02-006B015F-1000427D-00000001.mp3",'
    b'"type":"audio/mp3","startTime":"2024-03-11T09:15:02.000+0000","stopTime":'
    b'"2024-03-11T09:21:47.000+0000","callUUID":"011AP643CSAPR4FKQGQE31TAES00029V",'
    b'"duration":"405000","size":"1620044","tenant":"Environment","ivrprofile":"CallRecProfile",'
    b'"parameters":{"connId":"006a0269722c1f4e","dnis":"18005550199","ani":"+14155550100",'
    b'"id":"011AP643CSAPR4FKQGQE31TAES00029V"},"masks":[],"partitions":[],"accessgroups":[],'
    b'"mediaDescriptor":{"storage":"webdav","path":"recordings/2024/03/11/'
    b'011AP643CSAPR4FKQGQE31TAES00029V.mp3"},"originalMediaDescriptor":{"mediaUri":'
    b'"http://recorder.example.com/recordings/2024/03/11/011AP643CSAPR4FKQGQE31TAES00029V.mp3"}},'
    b'{"mediaId":"callrec.008E0149-12132920.141216184241.wav","type":"audio/wav","mediaDescriptor":'
    b'{"storage":"awsS3","path":"18bae11b-3028-4844-aba1-ac47bad457f0/recording.wav","data":'
    b'{"bucket":"callrecording"}},"originalMediaDescriptor":{"storage":"local","path":"media.wav"}'
    b'}],"eventHistory":[{"occurredAt":"2024-03-11T09:15:02.000+0000","event":"Joined",'
    b'"contact":{"type":"External","phoneNumber":"+14155550100"},"calluuid":'
    b'"011AP643CSAPR4FKQGQE31TAES00029V"},{"occurredAt":"2024-03-11T09:15:09.000+0000",'
    b'"event":"Joined","contact":{"type":"Agent","phoneNumber":"sip:6001@pbx.example.com",'
    b'"userName":"agent6001@example.com","firstName":"Kim","lastName":"Lee"},"calluuid":'
    b'"011AP643CSAPR4FKQGQE31TAES00029V"},{"occurredAt":"2024-03-11T09:21:47.000+0000",'
    b'"event":"Left","contact":{"type":"Agent","phoneNumber":"6001","userName":"agent6001",'
    b'"firstName":"Kim","lastName":"Lee"},"calluuid":"011AP643CSAPR4FKQGQE31TAES00029V"}],'
    b'"region":"usw1","callType":"Inbound"}'
    b'{"id":"04RVNIR8LQ03TKCKN0MRD7LAES000001","callerPhoneNumber":"+16505550123",'
    b'"dialedPhoneNumber":"+18885550142","startTime":"2025-10-28T01:25:07.129+0000","stopTime":'
    b'"2025-10-28T01:27:21.625+0000","mediaFiles":[],"eventHistory":[{"occurredAt":'
    b'"2025-10-28T01:25:07.129+0000","event":"Joined","contact":{"type":"External",'
    b'"phoneNumber":"+16505550123"},"calluuid":"04RVNIR8LQ03TKCKN0MRD7LAES000001"},'
    b'{"occurredAt":"2025-10-28T01:25:21.068+0000","event":"Joined","contact":{"type":"Agent",'
    b'"phoneNumber":"+14160000001","userName":"alex.morgan@example.com","firstName":'
    b'"Alex","lastName":"Morgan"},"calluuid":"04RVNIR8LQ03TKCKN0MRD7LAES000001"},'
    b'{"occurredAt":"2025-10-28T01:27:21.625+0000","event":"Left","contact":{"type":"Agent",'
    b'"phoneNumber":"+14160000001","userName":"alex.morgan@example.com","firstName":'
    b'"Alex","lastName":"Morgan"},"calluuid":"04RVNIR8LQ03TKCKN0MRD7LAES000001"}],'
    b'"region":"usw1","callType":"Outbound"}'
)
_COMPRESSED = b"\x01"
# A negative level: literals are not Huffman-coded, which was half of compressing a 1 KB
# recording. Against level 3, demo recordings (1,063 bytes of JSON): 3.7 µs to compress
# instead of 7.1, 1.1 to decompress instead of 2.6, 222 bytes instead of 205 (level 9 saved
# 5% more than 3 at four times its cost). Every level reads back with the same decoder.
_LEVEL = -1
_DICTIONARY = zstandard.ZstdCompressionDict(VOCABULARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
_local = threading.local()  # zstandard's (de)compressors serve one thread at a time


def _compressor() -> zstandard.ZstdCompressor:
    compressor: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(
            level=_LEVEL, dict_data=_DICTIONARY, write_checksum=False
        )
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor(dict_data=_DICTIONARY)
    return decompressor


def pack(blob: bytes) -> bytes:
    """A recording's JSON as it is stored."""
    return _COMPRESSED + _compressor().compress(blob)


def unpack(stored: bytes) -> bytes:
    """A recording's JSON from its stored form (either)."""
    if stored[:1] == _COMPRESSED:
        return _decompressor().decompress(stored[1:])
    return stored  # plain JSON, stored before compression


def decode(stored: bytes) -> dict[str, Any]:
    """A recording's document from its stored form (either)."""
    doc: dict[str, Any] = orjson.loads(unpack(stored))
    return doc
