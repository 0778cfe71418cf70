"""The differential client on kcat (librdkafka 2.0): produce-consume, codecs,
offsets-by-time (-Q, and consuming from s@timestamp) and errors (unknown topic: metadata,
produce, consume). kcat cannot create topics nor set record timestamps, so those setup
steps use confluent-kafka's AdminClient and Producer; everything observed goes through kcat.
See diff_common.py for the contract."""

import json
import re
import subprocess

import diff_common as dc


def kcat(a, args, stdin=None, check=True):
    r = subprocess.run(["kcat", "-b", a.bootstrap, *args], input=stdin, capture_output=True, timeout=60)
    if check and r.returncode != 0:
        dc.log(r.stderr.decode(errors="replace"))
        raise RuntimeError(f"kcat {args} exited {r.returncode}")
    return r


def error_text(stderr):
    """kcat's error line without names (topic, broker): 'Broker: Unknown topic or partition'."""
    m = re.search(r"(Broker: [^\n(]+|Local: [^\n(]+)", stderr.decode(errors="replace"))
    return m.group(1).strip() if m else None


def create(a, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    ad = AdminClient({"bootstrap.servers": a.bootstrap, "log_level": 3})
    for _, f in ad.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).items():
        f.result(timeout=20)
    dc.wait_until(lambda: topic in ad.list_topics(timeout=10).topics, 20, "topic metadata")


def consume_json(a, topic):
    out = kcat(a, ["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J",
                   "-X", "fetch.message.max.bytes=2000000"]).stdout
    recs = []
    for line in out.decode().splitlines():
        m = json.loads(line)
        hdrs = m.get("headers") or []
        headers = [(hdrs[i], None if hdrs[i + 1] is None else hdrs[i + 1].encode()) for i in range(0, len(hdrs), 2)]
        key = None if m.get("key") is None else m["key"].encode()
        val = None if m.get("payload") is None else m["payload"].encode()
        recs.append((m["partition"], m["offset"], key, val, headers))
    return recs


def produce_consume(a):
    create(a, a.topic, dc.PARTITIONS)
    murmur = ["-X", "partitioner=murmur2_random"]
    keyed = "".join(f"key-{i % 13}\tvalue {i} " + "v" * i + "\n" for i in range(40))
    kcat(a, ["-P", "-t", a.topic, "-K", "\t", "-H", "n=1", "-H", "empty=", *murmur], keyed.encode())
    kcat(a, ["-P", "-t", a.topic, "-p", "2", "-H", "h=v"], b"null key\n")
    # -Z: an empty value is sent as null (a tombstone).
    kcat(a, ["-P", "-t", a.topic, "-K", "\t", "-Z", *murmur], b"tombstone\t\n")
    big = "".join(chr(ord("a") + i % 26) for i in range(dc.BIG))
    kcat(a, ["-P", "-t", a.topic, "-K", "\t", "-X", "message.max.bytes=2000000", *murmur],
         f"big\t{big}\n".encode())
    got = consume_json(a, a.topic)
    where, agrees = dc.key_partitions(got)
    return {"consumed": len(got), "partitions": dc.per_partition(got), "key_partition": where,
            "murmur2_agrees": agrees}


def codecs(a):
    create(a, a.topic, 1)
    out = {}
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        vals = [f"{codec} value {i} " * 20 for i in range(50)]
        kcat(a, ["-P", "-t", a.topic, "-p", "0", "-K", "\t", "-z", codec],
             "".join(f"{codec}\t{v}\n" for v in vals).encode())
    got = consume_json(a, a.topic)
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        vals = [f"{codec} value {i} " * 20 for i in range(50)]
        mine = [(o, v.decode()) for _, o, k, v, _ in got if k == codec.encode()]
        out[codec] = {"consumed": len(mine), "values_equal": [v for _, v in mine] == vals,
                      "offsets": [o for o, _ in mine][:1] + [o for o, _ in mine][-1:]}
    return {"codecs": out}


def offsets_by_time(a):
    create(a, a.topic, 1)
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 1000, "log_level": 3})
    for i, ts in enumerate(dc.TIMESTAMPS):
        p.produce(a.topic, key=b"t", value=str(i).encode(), partition=0, timestamp=ts)
    p.flush(30)
    out = {}
    for name, ts in list(dc.LOOKUPS.items()) + [("latest", -1), ("earliest", -2)]:
        r = kcat(a, ["-Q", "-t", f"{a.topic}:0:{ts}"], check=False)
        m = re.search(rb"\[0\]\s+offset\s+(-?\d+)", r.stdout)
        q = {"offset": int(m.group(1)) if m else None}
        if ts >= 0:
            # Consuming from the timestamp: the first record kcat prints, with its timestamp.
            c = kcat(a, ["-C", "-t", a.topic, "-p", "0", "-o", f"s@{ts}", "-c", "1", "-e", "-q",
                         "-f", "%o %T\n"], check=False)
            first = c.stdout.decode().split()
            q["consumed_from"] = [int(x) for x in first[:2]] if first else None
        out[name] = q
    return out


def errors(a):
    missing = f"{a.topic}-missing"
    md = json.loads(kcat(a, ["-L", "-t", missing, "-J"]).stdout)
    t = [x for x in md["topics"] if x["topic"] == missing]
    out = {"metadata_unknown": t[0].get("error") if t else "not listed"}
    r = kcat(a, ["-P", "-t", missing, "-X", "message.timeout.ms=5000",
                 "-X", "topic.metadata.propagation.max.ms=1000"], b"v\n", check=False)
    out["produce_unknown"] = {"exit": r.returncode, "error": error_text(r.stderr)}
    r = kcat(a, ["-C", "-t", missing, "-e", "-q"], check=False)
    out["consume_unknown"] = {"exit": r.returncode, "error": error_text(r.stderr)}
    return out


SCENARIOS = {
    "produce-consume": produce_consume,
    "codecs": codecs,
    "offsets-by-time": offsets_by_time,
    "errors": errors,
}

if __name__ == "__main__":
    a = dc.args(SCENARIOS)
    dc.emit(SCENARIOS[a.scenario](a))
