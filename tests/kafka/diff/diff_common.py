"""Shared by the differential clients (confluent_client.py, kafka_python_client.py,
kcat_client.py): the command line of the differential contract, the records every client
produces, and the shape of observations.

Contract (tests/src/diff.rs): `<client> <scenario> --bootstrap B --topic T --group G`; the
last stdout line is one JSON value, the observation; diagnostics go to stderr. An
observation holds only what does not depend on the broker: no topic or group names, broker
ids, ports, cluster ids or wall-clock times; errors are given by name.
"""

import argparse
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import murmur2_partition  # noqa: E402  (Kafka's murmur2, shared with tests/kafka)

PARTITIONS = 4
# A 1,000,000-byte value: below Kafka's default max.message.bytes (1048588) with its batch.
BIG = 1_000_000
# Larger than the default max.message.bytes of a topic (1048588) even uncompressed.
OVERSIZE = 1_100_000
# Explicit record timestamps of offsets-by-time: far from now, distinct, one repeated.
T0 = 1_600_000_000_000
TIMESTAMPS = [T0, T0 + 1000, T0 + 1000, T0 + 2000, T0 + 5000]
# Timestamps looked up: before, between, exactly at (first, repeated, last), after.
LOOKUPS = {
    "before": T0 - 1000,
    "at_first": T0,
    "between": T0 + 500,
    "at_repeated": T0 + 1000,
    "at_third": T0 + 2000,
    "between_last": T0 + 3000,
    "at_last": T0 + 5000,
    "after": T0 + 10_000,
}


def args(scenarios):
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(scenarios))
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    return p.parse_args()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(observation):
    """Prints the observation as the last stdout line."""
    print(json.dumps(observation, sort_keys=True), flush=True)


def sha(b):
    """A value's digest (first 16 hex digits of its sha256), or None for a null value."""
    if b is None:
        return None
    return hashlib.sha256(b).hexdigest()[:16]


def text(b):
    return None if b is None else b.decode("utf-8", "backslashreplace")


def records():
    """The records of produce-consume, in send order: (key, value, headers, partition), where
    partition is None (the client's murmur2 partitioner decides) or explicit (a null key, so
    the partitioner's random choice does not make the observation differ between runs)."""
    out = []
    for i in range(40):
        key = f"key-{i % 13}".encode()
        value = bytes((i + j) % 256 for j in range(100 + i))
        headers = [("n", str(i).encode()), ("empty", b""), ("null", None)] if i % 3 == 0 else []
        out.append((key, value, headers, None))
    out.append((None, b"null key", [("h", b"v")], 2))
    out.append((b"tombstone", None, [], None))
    out.append((b"big", bytes(i % 251 for i in range(BIG)), [("size", str(BIG).encode())], None))
    return out


def expected_partition(key, explicit):
    return explicit if explicit is not None else murmur2_partition(key, PARTITIONS)


def codec_values(codec):
    """Compressible values, so each codec really compresses."""
    return [(f"{codec}-{i} " * 20).encode() + bytes(range(256)) for i in range(50)]


def per_partition(consumed):
    """consumed: (partition, offset, key, value, headers) tuples -> {partition: [rows]} with
    rows [offset, key text, value digest, value length, headers] in offset order."""
    out = {}
    for p, o, k, v, h in sorted(consumed, key=lambda r: (r[0], r[1])):
        out.setdefault(str(p), []).append([o, text(k), sha(v), None if v is None else len(v),
                                           [[hk, text(hv)] for hk, hv in (h or [])]])
    return out


def key_partitions(consumed):
    """{key: partition} of the keyed records consumed, and whether each is murmur2's choice."""
    where = {}
    for p, _, k, _, _ in consumed:
        if k is not None:
            where[text(k)] = p
    agrees = all(murmur2_partition(k.encode(), PARTITIONS) == p for k, p in where.items())
    return where, agrees


def contiguous(offsets, start, end):
    """Whether offsets are exactly start..end-1 in order."""
    return list(offsets) == list(range(start, end))


def wait_until(pred, timeout, what, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"timed out waiting for {what}")
