"""Topics and records on a real Kafka cluster, for the cluster-mode tests
(tests/all/cluster.rs through tests/src/cluster.rs): Rill's hosts keep their records there,
so the tests create topics, produce and read back with confluent-kafka (librdkafka), never
through Rill.

  create  --topic T --partitions N [--replication R] [--config K=V]...
          create T (already there with N partitions is fine; another count is a failure)
  produce --topic T      JSON lines on stdin, {"key", "value", "headers": {K: V}}, produced
                         with acks=all and idempotence; exits non-zero unless every record
                         was acknowledged; prints the count
  orders  --topic T --first F [--count N] [--rate R]
          produce order events F, F+1, ... (the JSON the notifier example reads), R per
          second, until N are produced or stdin is closed; then wait for every delivery
          report and print one line per acknowledged order id (`ack ID`) and per failed
          one (`err ID NAME`)
  describe --topic T     {"partitions": [{"partition", "leader", "replicas": [...]}]} or
                         {"error": NAME} if T is missing
  consume --topic T [--missing-ok] [--isolation read_committed|read_uncommitted]
                         every record of T from the beginning of each partition to its high
                         watermark at the start, one JSON line each:
                         {"partition", "offset", "key", "value", "headers": {K: V}}
                         (nothing, with --missing-ok, if T does not exist); read_committed
                         (the default) stops at each partition's end as it reads it then:
                         records of transactions still open are not seen

Every command takes --bootstrap HOST:PORT[,HOST:PORT...].
"""

import argparse
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def order_value(i):
    # Byte for byte what order() in tests/src/cluster.rs builds.
    return f'{{"type":"order_created","order_id":{i},"email":"c{i}@example.com","total_cents":{i * 7 % 10000}}}'


def producer(bootstrap):
    return Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        # Long enough to ride out a broker's loss and a leader election.
        "message.timeout.ms": 60000,
    })


def create(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    configs = dict(kv.split("=", 1) for kv in a.config)
    fut = admin.create_topics([NewTopic(a.topic, a.partitions, a.replication, config=configs)],
                              operation_timeout=30, request_timeout=30)[a.topic]
    try:
        fut.result(60)
    except KafkaException as e:
        if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
            fail(f"create {a.topic}: {e}")
        md = admin.list_topics(a.topic, timeout=30).topics[a.topic]
        if len(md.partitions) != a.partitions:
            fail(f"{a.topic} exists with {len(md.partitions)} partitions, not {a.partitions}")
    # Wait until every partition has a leader, so a produce right after does not race it.
    deadline = time.time() + 60
    while time.time() < deadline:
        md = admin.list_topics(a.topic, timeout=30).topics[a.topic]
        if md.error is None and len(md.partitions) == a.partitions and all(
                p.leader >= 0 for p in md.partitions.values()):
            print(f"created {a.topic}")
            return
        time.sleep(0.2)
    fail(f"{a.topic} has no leader for every partition after 60 s")


def produce(a):
    p = producer(a.bootstrap)
    errors = []
    n = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        r = json.loads(line)
        headers = [(k, None if v is None else v.encode()) for k, v in (r.get("headers") or {}).items()]
        p.produce(a.topic,
                  key=None if r.get("key") is None else r["key"].encode(),
                  value=None if r.get("value") is None else r["value"].encode(),
                  headers=headers,
                  on_delivery=lambda err, _m: err and errors.append(err))
        p.poll(0)
        n += 1
    if p.flush(90) != 0 or errors:
        fail(f"produce to {a.topic} failed: {errors[:3]}")
    print(n)


def orders(a):
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    if a.count is None:
        threading.Thread(target=watch_stdin, daemon=True).start()
    p = producer(a.bootstrap)
    acked, failed = [], []

    def report(i):
        def on_delivery(err, _msg):
            if err is None:
                acked.append(i)
            else:
                failed.append((i, err.name()))
        return on_delivery

    i = a.first
    start = time.monotonic()
    while not stop.is_set() and (a.count is None or i < a.first + a.count):
        if a.rate:
            ahead = (i - a.first) / a.rate - (time.monotonic() - start)
            if ahead > 0:
                stop.wait(ahead)
                continue
        # Keyed by the id, so orders spread over every partition.
        p.produce(a.topic, key=str(i).encode(), value=order_value(i).encode(), on_delivery=report(i))
        p.poll(0)
        i += 1
    left = p.flush(120)
    for i in acked:
        print(f"ack {i}")
    for i, name in failed:
        print(f"err {i} {name}")
    if left:
        print(f"{left} records without a delivery report", file=sys.stderr)


def describe(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    md = admin.list_topics(a.topic, timeout=30).topics[a.topic]
    if md.error is not None:
        print(json.dumps({"error": md.error.name()}))
        return
    print(json.dumps({"partitions": [
        {"partition": p.id, "leader": p.leader, "replicas": list(p.replicas)}
        for p in sorted(md.partitions.values(), key=lambda p: p.id)]}))


def retrying(what, deadline, f):
    """f(), retried while the cluster is failing over (a lost broker is still named as a
    leader until its partitions have new ones)."""
    while True:
        try:
            return f()
        except KafkaException as e:
            if time.time() > deadline:
                fail(f"{what}: {e}")
            time.sleep(0.5)


def consume(a):
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "rill-tests-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": a.isolation,
    })
    deadline = time.time() + 60
    md = retrying(a.topic, deadline, lambda: c.list_topics(a.topic, timeout=10)).topics[a.topic]
    if md.error is not None:
        if a.missing_ok and md.error.name() == "UNKNOWN_TOPIC_OR_PART":
            return
        fail(f"{a.topic}: {md.error}")
    ends = {}
    for pid in md.partitions:
        tp = TopicPartition(a.topic, pid)
        low, high = retrying(f"{a.topic}[{pid}] watermarks", deadline,
                             lambda: c.get_watermark_offsets(tp, timeout=10))
        if high > low:
            ends[pid] = high
    c.assign([TopicPartition(a.topic, pid, 0) for pid in ends])
    while ends:
        if time.time() > deadline:
            fail(f"{a.topic}: partitions {sorted(ends)} not read to their end within 60 s")
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            # The end of a partition: its high watermark, or read_committed, the end of what
            # is committed now (the last offset may be a transaction marker, never
            # delivered). Otherwise a transient error the consumer recovers from by itself.
            pid = m.partition()
            if m.error().code() == KafkaError._PARTITION_EOF and pid in ends and (
                    m.offset() >= ends[pid] or a.isolation == "read_committed"):
                del ends[pid]
            continue
        pid = m.partition()
        if pid not in ends or m.offset() >= ends[pid]:
            continue
        headers = {k: None if v is None else v.decode("utf-8", "replace") for k, v in (m.headers() or [])}
        print(json.dumps({
            "partition": pid,
            "offset": m.offset(),
            "key": None if m.key() is None else m.key().decode("utf-8", "replace"),
            "value": None if m.value() is None else m.value().decode("utf-8", "replace"),
            "headers": headers,
        }))
        if m.offset() + 1 >= ends[pid]:
            del ends[pid]
    c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["create", "produce", "orders", "describe", "consume"])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--replication", type=int, default=1)
    p.add_argument("--config", action="append", default=[])
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int)
    p.add_argument("--rate", type=float)
    p.add_argument("--missing-ok", action="store_true")
    p.add_argument("--isolation", choices=["read_committed", "read_uncommitted"],
                   default="read_committed")
    a = p.parse_args()
    {"create": create, "produce": produce, "orders": orders, "describe": describe,
     "consume": consume}[a.command](a)


if __name__ == "__main__":
    main()
