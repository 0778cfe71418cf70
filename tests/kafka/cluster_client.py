"""The Kafka side of the cluster-mode tests (tests/all/cluster.rs), with confluent-kafka.

  cluster_client.py create  --bootstrap B --topic T --partitions N [--replication R] [--config k=v ...]
  cluster_client.py produce --bootstrap B --topic T --first I --count N [--tag S] [--per-second R] [--raw V]
  cluster_client.py consume --bootstrap B --topic T --expect N [--idle-seconds S]

`produce` writes order_created events (key `c<i % 37>`, value with order_id i and e-mail
`u<i>@<tag>.io`), acks=all, flushed every 100 records, paced to --per-second if given, and
prints `produced N`. `--raw V` writes N records whose value is V (a poison record, say).
`consume` reads the topic from the beginning with no group and prints one JSON line per
record (partition, offset, key, value, headers) until it has at least N records and nothing
more came for a second, or nothing came for --idle-seconds.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    config = dict(kv.split("=", 1) for kv in a.config)
    fs = admin.create_topics(
        [NewTopic(a.topic, num_partitions=a.partitions, replication_factor=a.replication, config=config)]
    )
    for _, f in fs.items():
        f.result(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(topic=a.topic, timeout=10)
        t = md.topics.get(a.topic)
        if t is not None and t.error is None and len(t.partitions) == a.partitions:
            if all(p.leader >= 0 for p in t.partitions.values()):
                print(f"created {a.topic}")
                return
        time.sleep(0.1)
    sys.exit(f"topic {a.topic} not ready")


def produce(a):
    p = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(str(err))

    start = time.time()
    for n in range(a.count):
        i = a.first + n
        if a.raw is not None:
            key, value = f"poison-{i}", a.raw
        else:
            key = f"c{i % 37}"
            value = json.dumps(
                {"type": "order_created", "order_id": i, "email": f"u{i}@{a.tag}.io", "total_cents": i}
            )
        while True:
            try:
                p.produce(a.topic, key=key, value=value, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        if n % 100 == 99:
            p.flush(60)
        if a.per_second:
            ahead = (n + 1) / a.per_second - (time.time() - start)
            if ahead > 0:
                time.sleep(ahead)
    left = p.flush(60)
    if left or failed:
        sys.exit(f"produce failed: {left} unflushed, errors {failed[:3]}")
    print(f"produced {a.count}")


def consume(a):
    c = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    md = c.list_topics(topic=a.topic, timeout=10)
    t = md.topics.get(a.topic)
    if t is None or t.error is not None:
        sys.exit(f"no topic {a.topic}")
    c.assign([TopicPartition(a.topic, p, 0) for p in t.partitions])
    got = 0
    last = time.time()
    while True:
        m = c.poll(0.2)
        if m is None:
            idle = time.time() - last
            if (got >= a.expect and idle > 1.0) or idle > a.idle_seconds:
                break
            continue
        if m.error():
            raise KafkaException(m.error())
        last = time.time()
        got += 1
        headers = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
        print(
            json.dumps(
                {
                    "partition": m.partition(),
                    "offset": m.offset(),
                    "key": m.key().decode() if m.key() is not None else None,
                    "value": m.value().decode() if m.value() is not None else None,
                    "headers": headers,
                }
            ),
            flush=True,
        )
    c.close()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, default=1)
    c.add_argument("--replication", type=int, default=1)
    c.add_argument("--config", action="append", default=[])
    pr = sub.add_parser("produce")
    pr.add_argument("--bootstrap", required=True)
    pr.add_argument("--topic", required=True)
    pr.add_argument("--first", type=int, default=0)
    pr.add_argument("--count", type=int, required=True)
    pr.add_argument("--tag", default="x")
    pr.add_argument("--per-second", type=float, default=0)
    pr.add_argument("--raw")
    co = sub.add_parser("consume")
    co.add_argument("--bootstrap", required=True)
    co.add_argument("--topic", required=True)
    co.add_argument("--expect", type=int, default=0)
    co.add_argument("--idle-seconds", type=float, default=3)
    a = p.parse_args()
    {"create": create, "produce": produce, "consume": consume}[a.cmd](a)


if __name__ == "__main__":
    main()
