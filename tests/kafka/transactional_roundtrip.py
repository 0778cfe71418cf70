"""Issue 13: transactions with confluent-kafka against Rill's Kafka door.

A transactional producer commits txn A, aborts txn B, commits txn C; a read_committed
consumer sees exactly A and C, a read_uncommitted one A, B and C (never a control record).
Then a second producer with the same transactional.id fences the first: the zombie's open
transaction is aborted and its next commit fails as fenced. Prints what it saw.
"""

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import fail, parser


def consume_all(bootstrap, topic, isolation, expect, timeout=20):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < expect:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen.append((m.offset(), m.value().decode()))
    # Nothing more may come.
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        m = c.poll(0.3)
        if m is not None and not m.error():
            seen.append((m.offset(), m.value().decode()))
    c.close()
    return seen


def main():
    p = parser(__doc__)
    a = p.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for f in admin.create_topics([NewTopic(a.topic, 1, 1)]).values():
        f.result()
    tid = f"txn-{uuid.uuid4()}"
    conf = {"bootstrap.servers": a.bootstrap, "transactional.id": tid, "transaction.timeout.ms": 10000}
    prod = Producer(conf)
    prod.init_transactions(15)
    for name, values, commit in [("A", ["a1", "a2", "a3"], True), ("B", ["b1", "b2"], False), ("C", ["c1"], True)]:
        prod.begin_transaction()
        for v in values:
            prod.produce(a.topic, value=v.encode(), partition=0)
        prod.flush(10)
        if commit:
            prod.commit_transaction(15)
        else:
            prod.abort_transaction(15)
        print(f"txn {name} {'committed' if commit else 'aborted'}")
    committed = consume_all(a.bootstrap, a.topic, "read_committed", 4)
    uncommitted = consume_all(a.bootstrap, a.topic, "read_uncommitted", 6)
    print("read_committed", committed)
    print("read_uncommitted", uncommitted)
    if [v for _, v in committed] != ["a1", "a2", "a3", "c1"]:
        fail(f"read_committed saw {committed}")
    if [v for _, v in uncommitted] != ["a1", "a2", "a3", "b1", "b2", "c1"]:
        fail(f"read_uncommitted saw {uncommitted}")
    # Markers take offsets: A at 0-2, its marker 3, B 4-5, marker 6, C 7, marker 8.
    if [o for o, _ in committed] != [0, 1, 2, 7]:
        fail(f"offsets {committed}")

    # Fencing: the zombie begins a transaction, a new instance initialises the same id.
    prod.begin_transaction()
    prod.produce(a.topic, value=b"zombie", partition=0)
    prod.flush(10)
    fresh = Producer(conf)
    fresh.init_transactions(15)
    try:
        prod.commit_transaction(15)
        fail("the fenced producer committed")
    except KafkaException as e:
        err = e.args[0]
        print(f"zombie commit failed: {err.name()} fatal={err.fatal()}")
    fresh.begin_transaction()
    fresh.produce(a.topic, value=b"fresh", partition=0)
    fresh.commit_transaction(15)
    after = consume_all(a.bootstrap, a.topic, "read_committed", 5)
    values = [v for _, v in after]
    print("after fencing", values)
    if values != ["a1", "a2", "a3", "c1", "fresh"]:
        fail(f"after fencing read_committed saw {values}")
    print("ok")


if __name__ == "__main__":
    main()
