"""confluent-kafka (librdkafka): create a topic, produce keyed records with a codec, consume
them back by assignment and check bytes, partitions and order."""

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import check_consumed, fail, key_of, murmur2_partition, parser, value_of


def main():
    p = parser(__doc__)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--codec", default="none")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--idempotent", action="store_true")
    a = p.parse_args()

    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)])
    for _, f in fs.items():
        f.result(timeout=10)
    md = admin.list_topics(a.topic, timeout=10)
    if len(md.topics[a.topic].partitions) != a.partitions:
        fail(f"metadata shows {len(md.topics[a.topic].partitions)} partitions")

    produced = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            produced.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    prod = Producer({
        "bootstrap.servers": a.bootstrap,
        "compression.type": a.codec,
        "linger.ms": 20,
        # murmur2 is what the Java client uses for keys; check the partition matches it.
        "partitioner": "murmur2_random",
        "enable.idempotence": a.idempotent,
    })
    sent = []
    for i in range(a.count):
        k, v = key_of(i), value_of(i)
        sent.append((k, v))
        prod.produce(a.topic, key=k, value=v, on_delivery=on_delivery)
        prod.poll(0)
    if prod.flush(30) != 0:
        fail("producer did not flush")
    if errors:
        fail(f"delivery errors: {errors[:3]}")
    for part, _, k, _ in produced:
        if part != murmur2_partition(k, a.partitions):
            fail(f"key {k!r} landed on {part}, murmur2 says {murmur2_partition(k, a.partitions)}")
    # Delivery reports come per batch, in order per partition; order within the send list
    # per partition is what the log must keep.
    produced.sort(key=lambda r: (r[0], r[1]))
    sent_per_part = {}
    for k, v in sent:
        sent_per_part.setdefault(murmur2_partition(k, a.partitions), []).append((k, v))
    for part, recs in sent_per_part.items():
        got = [(k, v) for pp, _, k, v in produced if pp == part]
        if got != recs:
            fail(f"partition {part}: offsets were not assigned in send order")

    cons = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "unused",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    })
    cons.assign([TopicPartition(a.topic, i, 0) for i in range(a.partitions)])
    consumed = []
    idle = 0
    while len(consumed) < a.count and idle < 100:
        m = cons.poll(0.1)
        if m is None:
            idle += 1
            continue
        if m.error():
            fail(f"consume error: {m.error()}")
        consumed.append((m.partition(), m.offset(), m.key(), m.value()))
    cons.close()
    check_consumed(produced, consumed)
    print(f"ok: confluent-kafka {a.codec} {a.count} records over {a.partitions} partitions")


if __name__ == "__main__":
    main()
