"""kafka-python (pure Python): create a topic, produce keyed records with a codec, consume
them back by assignment and check bytes, partitions (murmur2) and order."""

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from common import check_consumed, fail, key_of, murmur2_partition, parser, value_of


def main():
    p = parser(__doc__)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--codec", default="none")
    p.add_argument("--count", type=int, default=500)
    a = p.parse_args()

    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap)
    admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)])
    admin.close()

    codec = None if a.codec == "none" else a.codec
    prod = KafkaProducer(bootstrap_servers=a.bootstrap, compression_type=codec, linger_ms=20)
    futures = []
    for i in range(a.count):
        futures.append(prod.send(a.topic, key=key_of(i), value=value_of(i)))
    prod.flush(30)
    produced = []
    for i, f in enumerate(futures):
        md = f.get(timeout=30)
        k = key_of(i)
        if md.partition != murmur2_partition(k, a.partitions):
            fail(f"key {k!r} landed on {md.partition}, murmur2 says {murmur2_partition(k, a.partitions)}")
        produced.append((md.partition, md.offset, k, value_of(i)))
    prod.close()
    # Send order per partition must equal offset order.
    per = {}
    for part, off, _, _ in produced:
        per.setdefault(part, []).append(off)
    for part, offs in per.items():
        if offs != sorted(offs):
            fail(f"partition {part}: offsets not in send order")

    cons = KafkaConsumer(bootstrap_servers=a.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    cons.assign([TopicPartition(a.topic, i) for i in range(a.partitions)])
    cons.seek_to_beginning()
    consumed = []
    idle = 0
    while len(consumed) < a.count and idle < 50:
        batch = cons.poll(timeout_ms=200)
        if not batch:
            idle += 1
        for tp, msgs in batch.items():
            for m in msgs:
                consumed.append((m.partition, m.offset, m.key, m.value))
    cons.close()
    produced.sort(key=lambda r: (r[0], r[1]))
    check_consumed(produced, consumed)
    print(f"ok: kafka-python {a.codec} {a.count} records over {a.partitions} partitions")


if __name__ == "__main__":
    main()
