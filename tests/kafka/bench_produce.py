"""Kafka front-door benchmark (issue 6), with confluent-kafka (librdkafka) over loopback.

1. Throughput: --count records of --size bytes to a fresh topic with --partitions
   partitions, batched (linger.ms, large batches), acks=1. Reports records/s and MB/s from
   the first produce() to the last delivery report.
2. Latency: a producer paced at --rate records/s for --seconds, and a consumer in another
   process; each value carries its send time, and the consumer reports receive - send
   (p50/p99/max) after dropping the first second.

Topics are created with the broker's defaults (flush `never` unless configured).
"""

import argparse
import multiprocessing as mp
import resource
import struct
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).items():
        f.result(timeout=10)


def throughput(a):
    topic = f"bench-tput-{uuid.uuid4().hex[:8]}"
    create(a.bootstrap, topic, a.partitions)
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "linger.ms": a.linger,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 2_000_000,
        "acks": 1,
        "compression.type": a.codec,
        # A Python callback per delivered record would cost more than the broker does;
        # only failures call back, and the high watermarks prove every record landed.
        "delivery.report.only.error": True,
    })
    value = b"x" * a.size
    errors = []

    def cb(err, _msg):
        errors.append(err)

    chunk = 10_000
    msgs = [{"value": value, "partition": i % a.partitions} for i in range(chunk)]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    sent = 0
    while sent < a.count:
        n = min(chunk, a.count - sent)
        # produce_batch hands a whole list to librdkafka in one call (the "batch mode" of
        # the Python client); the per-message callback fires on delivery.
        enq = p.produce_batch(topic, msgs[:n], on_delivery=cb)
        if enq != n:
            raise SystemExit(f"only {enq} of {n} records were queued")
        sent += n
        p.poll(0)
    left = p.flush(120)
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    dt = t1 - t0
    if left or errors:
        raise SystemExit(f"{left} records not delivered, errors: {errors[:3]}")
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "bench-check"})
    stored = sum(c.get_watermark_offsets(TopicPartition(topic, i), timeout=10)[1] for i in range(a.partitions))
    c.close()
    if stored != a.count:
        raise SystemExit(f"the topic holds {stored} records, expected {a.count}")
    rps = a.count / dt
    print(f"throughput: {a.count} records x {a.size} B, {a.partitions} partitions, codec {a.codec}, "
          f"linger {a.linger} ms: {dt:.2f} s, {rps:,.0f} records/s, {rps * a.size / 1e6:.1f} MB/s "
          f"(client CPU {client_cpu:.2f} s)")
    return rps


def consume_latencies(bootstrap, topic, partitions, total, warm, q):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench-latency",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "fetch.min.bytes": 1,
        "fetch.error.backoff.ms": 0,
        "enable.partition.eof": False,
    })
    c.assign([TopicPartition(topic, i, 0) for i in range(partitions)])
    q.put("ready")
    lat = []
    seen = 0
    deadline = time.time() + 600
    while seen < total and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        now = time.time_ns()
        seq, sent = struct.unpack(">qq", m.value()[:16])
        seen += 1
        if seq >= warm:
            lat.append((now - sent) / 1e6)
    c.close()
    q.put(lat)


def latency(a):
    topic = f"bench-lat-{uuid.uuid4().hex[:8]}"
    create(a.bootstrap, topic, a.partitions)
    total = int(a.rate * a.seconds)
    warm = int(a.rate)  # drop the first second
    q = mp.Queue()
    proc = mp.Process(target=consume_latencies, args=(a.bootstrap, topic, a.partitions, total, warm, q))
    proc.start()
    q.get(timeout=30)
    time.sleep(1.0)
    p = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 0, "acks": 1})
    pad = b"y" * max(0, a.size - 16)
    # Pace by sleeping about 1 ms and sending what is due (10 records per ms at 10,000/s):
    # a spin loop would take a whole core from the broker and consumer on a small machine.
    # Each record carries the time it was actually handed to the client.
    t0 = time.perf_counter()
    i = 0
    while i < total:
        due = min(total, int((time.perf_counter() - t0) * a.rate) + 1)
        while i < due:
            p.produce(topic, value=struct.pack(">qq", i, time.time_ns()) + pad, partition=i % a.partitions)
            i += 1
        p.poll(0)
        time.sleep(0.001)
    p.flush(30)
    lat = q.get(timeout=120)
    proc.join()
    lat.sort()
    if not lat:
        raise SystemExit("no latency samples")

    def pct(x):
        return lat[min(len(lat) - 1, int(len(lat) * x))]

    print(f"latency: {a.rate:,} records/s for {a.seconds} s ({len(lat)} samples after 1 s warm-up): "
          f"p50 {pct(0.50):.2f} ms, p99 {pct(0.99):.2f} ms, p99.9 {pct(0.999):.2f} ms, max {lat[-1]:.2f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--linger", type=int, default=10)
    ap.add_argument("--codec", default="none")
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    a = ap.parse_args()
    if not a.skip_throughput:
        throughput(a)
    if not a.skip_latency:
        latency(a)


if __name__ == "__main__":
    main()
