"""Helpers shared by the Kafka client scripts that tests/all/kafka.rs drives.

Each script takes --bootstrap HOST:PORT, prints what it checked, and exits non-zero with a
message on the first mismatch. Values are binary (every byte value appears) so that any
re-encoding or text conversion on the way would show.
"""

import argparse
import sys
import time


def parser(desc):
    p = argparse.ArgumentParser(description=desc)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    return p


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def key_of(i):
    return f"key-{i % 17}".encode()


def value_of(i, size=64):
    # Every byte value, shifted per record, plus the index so records differ.
    body = bytes((i + j) % 256 for j in range(size))
    return f"{i}:".encode() + body


def murmur2(data):
    """Kafka's murmur2, as the Java client and kafka-python use for keyed records."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (data[i4] & 0xFF) + ((data[i4 + 1] & 0xFF) << 8) + ((data[i4 + 2] & 0xFF) << 16) + ((data[i4 + 3] & 0xFF) << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= (k % 0x100000000) >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra >= 3:
        h ^= (data[(length & ~3) + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[(length & ~3) + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[length & ~3] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= (h % 0x100000000) >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= (h % 0x100000000) >> 15
    return h


def murmur2_partition(key, partitions):
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def check_consumed(produced, consumed):
    """produced: list of (partition, offset, key, value) in send order.
    consumed: list of (partition, offset, key, value) in receive order.
    Checks exact bytes, the partition each record landed on, and order per partition."""
    want = {}
    for p, o, k, v in produced:
        want.setdefault(p, []).append((o, k, v))
    got = {}
    for p, o, k, v in consumed:
        got.setdefault(p, []).append((o, k, v))
    if sorted(want) != sorted(got):
        fail(f"partitions differ: produced to {sorted(want)}, consumed from {sorted(got)}")
    for p in want:
        w = want[p]
        g = got[p]
        if len(w) != len(g):
            fail(f"partition {p}: produced {len(w)} records, consumed {len(g)}")
        for a, b in zip(w, g):
            if a != b:
                fail(f"partition {p}: produced {a!r}, consumed {b!r}")
        offsets = [o for o, _, _ in g]
        if offsets != sorted(offsets) or len(set(offsets)) != len(offsets):
            fail(f"partition {p}: offsets out of order: {offsets[:20]}")


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")
