"""Two consumers in one group split a topic's partitions between them (no overlap, none
missing), and together read every record exactly once."""

import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from common import fail, key_of, parser, value_of


def main():
    p = parser(__doc__)
    p.add_argument("--group", default="split-group")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    a = p.parse_args()

    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for _, f in admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)]).items():
        f.result(timeout=10)

    stop = threading.Event()
    assigned = [set(), set()]
    records = [[], []]
    errors = []

    def run_confluent(n):
        c = Consumer({
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
        })

        def on_assign(_c, parts):
            assigned[n] = {tp.partition for tp in parts}

        def on_revoke(_c, parts):
            assigned[n] = set()

        c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
        while not stop.is_set():
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                errors.append(str(m.error()))
                continue
            records[n].append((m.partition(), m.offset()))
        c.close()

    def run_kafka_python(n):
        from kafka import KafkaConsumer
        c = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group,
                          auto_offset_reset="earliest", session_timeout_ms=6000,
                          heartbeat_interval_ms=300, auto_commit_interval_ms=200)
        # kafka-python 3.0.12 never finishes a rejoin that its leader starts because the
        # topic's metadata arrived after its first assignment, when a short poll times out
        # between that JoinGroup and its SyncGroup: the member stops heartbeating and
        # fetching for good, against any broker. Fetching the topic's metadata after
        # subscribing and before the first poll (which joins) keeps the first assignment
        # complete, so that rejoin never happens.
        c.subscribe([a.topic])
        if not c.partitions_for_topic(a.topic):
            fail(f"kafka-python does not see topic {a.topic}")
        while not stop.is_set():
            for _, msgs in c.poll(timeout_ms=100).items():
                records[n].extend((m.partition, m.offset) for m in msgs)
            assigned[n] = {tp.partition for tp in c.assignment()}
        c.close()

    run = run_confluent if a.client == "confluent" else run_kafka_python
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    threads[0].start()
    time.sleep(1.0)
    threads[1].start()

    # Wait until both hold a share and the shares cover every partition exactly once.
    deadline = time.time() + 45
    split = False
    while time.time() < deadline:
        x, y = set(assigned[0]), set(assigned[1])
        if x and y and not (x & y) and (x | y) == set(range(a.partitions)):
            split = (sorted(x), sorted(y))
            break
        time.sleep(0.1)
    if not split:
        stop.set()
        for t in threads:
            t.join()
        fail(f"partitions not split: {assigned}")

    # Now produce; each record must be read by exactly one member.
    prod = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5})
    for i in range(a.count):
        prod.produce(a.topic, key=key_of(i), value=value_of(i))
    prod.flush(30)
    deadline = time.time() + 30
    while time.time() < deadline and len(records[0]) + len(records[1]) < a.count:
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        fail(f"consumer errors: {errors[:3]}")
    total = records[0] + records[1]
    if len(total) != a.count or len(set(total)) != a.count:
        fail(f"expected {a.count} records once each, got {len(records[0])} + {len(records[1])} ({len(set(total))} distinct)")
    print(f"ok: {a.client} split {split[0]} / {split[1]}, read {len(records[0])} + {len(records[1])}")


if __name__ == "__main__":
    main()
