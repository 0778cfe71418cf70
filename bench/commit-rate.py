#!/usr/bin/env python3
"""commit-rate.py BOOTSTRAP — synchronous offset commits per second through one Kafka consumer
from 1, 2 and 4 threads, and through 2 and 4 consumers (confluent-kafka / librdkafka).

Cluster mode commits every partition of a deployment through its host's one group member;
this shows whether commits through one consumer overlap (docs/benchmarks.md, "Cluster
mode", "Where the time goes"). It creates topic `cser` (4 partitions) and groups `cser-g*`.
"""
import sys
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
try:
    admin.create_topics([NewTopic("cser", 4, 1)])["cser"].result()
except Exception as e:  # already there
    print(f"(create topic cser: {e})")
for _ in range(100):
    t = admin.list_topics(topic="cser", timeout=5).topics.get("cser")
    if t is not None and t.error is None and len(t.partitions) == 4:
        break
    time.sleep(0.1)
else:
    sys.exit("topic cser did not appear")
time.sleep(1)


def consumer(group):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})


def rate(consumers, threads, n=200):
    errors = []

    def work(c, p):
        try:
            for i in range(n):
                c.commit(offsets=[TopicPartition("cser", p, i + 1)], asynchronous=False)
        except Exception as e:
            errors.append(e)

    ts = [threading.Thread(target=work, args=(consumers[i % len(consumers)], i)) for i in range(threads)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    if errors:
        sys.exit(f"a commit failed: {errors[0]}")
    return threads * n / (time.perf_counter() - t)


one = consumer("cser-g1")
rate([one], 1, 20)  # warm-up
for threads in (1, 2, 4):
    print(f"1 consumer, {threads} thread(s): {rate([one], threads):.0f} commits/s")
for k in (2, 4):
    cs = [consumer(f"cser-g{k}") for _ in range(k)]
    rate(cs, k, 20)
    print(f"{k} consumers, {k} threads: {rate(cs, k):.0f} commits/s")
