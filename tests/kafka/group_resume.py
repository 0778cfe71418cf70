"""A consumer group consumes part of a topic, commits, stops; a new consumer in the same
group resumes exactly at the committed offsets. --client picks confluent-kafka or
kafka-python for the consumers; records are produced with confluent-kafka."""

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from common import fail, key_of, parser, value_of


def produce(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for _, f in admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)]).items():
        f.result(timeout=10)
    prod = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5})
    for i in range(a.count):
        prod.produce(a.topic, key=key_of(i), value=value_of(i))
    if prod.flush(30) != 0:
        fail("producer did not flush")


class Confluent:
    def __init__(self, a):
        from confluent_kafka import Consumer
        self.c = Consumer({
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        })
        self.c.subscribe([a.topic])

    def poll(self):
        m = self.c.poll(0.2)
        if m is None:
            return []
        if m.error():
            fail(f"consume error: {m.error()}")
        return [(m.partition(), m.offset(), m.value())]

    def commit(self):
        self.c.commit(asynchronous=False)

    def close(self):
        self.c.close()


class KafkaPython:
    def __init__(self, a):
        from kafka import KafkaConsumer
        self.c = KafkaConsumer(
            bootstrap_servers=a.bootstrap,
            group_id=a.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            max_poll_records=1,
        )
        # Topic metadata before the first poll: see group_split.py (a kafka-python 3.0.12
        # rejoin hang).
        self.c.subscribe([a.topic])
        self.c.partitions_for_topic(a.topic)

    def poll(self):
        out = []
        for _, msgs in self.c.poll(timeout_ms=200, max_records=1).items():
            out.extend((m.partition, m.offset, m.value) for m in msgs)
        return out

    def commit(self):
        self.c.commit()

    def close(self):
        self.c.close()


def main():
    p = parser(__doc__)
    p.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    p.add_argument("--group", default="resume-group")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--first", type=int, default=40)
    a = p.parse_args()
    produce(a)
    make = Confluent if a.client == "confluent" else KafkaPython

    # First consumer: read `first` records, commit, stop.
    c = make(a)
    seen = []
    deadline = time.time() + 30
    while len(seen) < a.first and time.time() < deadline:
        seen.extend(c.poll())
    if len(seen) < a.first:
        fail(f"first consumer got only {len(seen)} records")
    seen = seen[: a.first]
    c.commit()
    c.close()
    committed = {}
    for part, off, _ in seen:
        committed[part] = max(committed.get(part, -1), off + 1)

    # Second consumer, same group: must start at the committed offsets and see the rest.
    c = make(a)
    rest = []
    deadline = time.time() + 30
    while len(rest) < a.count - a.first and time.time() < deadline:
        rest.extend(c.poll())
    c.close()
    firsts = {}
    for part, off, _ in rest:
        firsts.setdefault(part, off)
    for part, off in firsts.items():
        if off != committed.get(part, 0):
            fail(f"partition {part}: resumed at {off}, committed {committed.get(part, 0)}")
    keys = {(p, o) for p, o, _ in seen} | {(p, o) for p, o, _ in rest}
    if len(keys) != a.count or len(seen) + len(rest) != a.count:
        fail(f"expected {a.count} distinct records once each, got {len(seen)} + {len(rest)} ({len(keys)} distinct)")
    print(f"ok: {a.client} group resumed at {committed} and read the other {len(rest)} records")


if __name__ == "__main__":
    main()
