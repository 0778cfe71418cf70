"""The differential client for Kafka transactions on confluent-kafka (librdkafka 2.16): the
scenarios of tests/all/transactions.rs. See diff_common.py for the contract.

Every scenario names its transactional ids after the run's group (unique per run), so two
runs never share a transaction coordinator's state. Records are sent to explicit partitions
and each transaction is flushed before it ends, so the offsets Kafka gives records and
transaction markers are the same in every run and can be compared exactly.
"""

import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

import diff_common as dc
from confluent_client import create, err_name

QUIET = {"log_level": 3}
# How long a read_committed consumer is given to (not) see records past an open transaction.
BLOCKED_WAIT = 2.0
# How long a reader keeps polling after it has what it expects, to catch extra records.
TAIL_WAIT = 0.5


def fenced_category(name):
    """Kafka's and librdkafka's names for "another producer with this transactional id took
    over" all become "fenced"; anything else is kept as it is."""
    return "fenced" if name in {"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"} else name


def txn_producer(a, suffix):
    return Producer({"bootstrap.servers": a.bootstrap, "transactional.id": f"{a.group}-{suffix}",
                     "transaction.timeout.ms": 10000, "linger.ms": 5, **QUIET})


def plain_producer(a):
    return Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5, **QUIET})


def reader(a, isolation, group=None, **extra):
    return Consumer({"bootstrap.servers": a.bootstrap, "group.id": group or f"{a.group}-reader",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "isolation.level": isolation, "fetch.wait.max.ms": 100, **QUIET, **extra})


def send(p, topic, records):
    """records: (partition, value) in order, produced and flushed; returns the delivery
    reports, [partition, offset] or the error (see error_obs), in send order."""
    reports, raised = send_raising(p, topic, records)
    if raised is not None:
        raise RuntimeError(f"producing to {topic} raised {raised}")
    return reports


def send_raising(p, topic, records):
    """As send, and the name of the error flush() raised (librdkafka raises a fatal error,
    such as a fenced producer's, from flush), or None."""
    reports = [None] * len(records)

    def cb(i):
        def on_delivery(err, msg):
            # Kept as it is: while flush() raises, calling the error's methods here fails.
            reports[i] = err if err is not None else [msg.partition(), msg.offset()]
        return on_delivery

    raised = None
    try:
        for i, (part, value) in enumerate(records):
            p.produce(topic, value=value.encode(), partition=part, on_delivery=cb(i))
            p.poll(0)
        p.flush(30)
    except KafkaException as e:
        raised = e.args[0].name()
    return [error_obs(r.name()) if isinstance(r, KafkaError) else r for r in reports], raised


def poll_records(c, want, timeout):
    """Polls until `want` records came (or `timeout`), then TAIL_WAIT more for any extra;
    returns {partition: [[offset, value]]} in arrival order and the error names seen."""
    got, errors = {}, []
    n = 0
    deadline = time.time() + timeout
    tail_end = None
    while True:
        now = time.time()
        if tail_end is None and (n >= want or now >= deadline):
            tail_end = now + TAIL_WAIT
        if tail_end is not None and now >= tail_end:
            break
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                errors.append(m.error().name())
            continue
        got.setdefault(str(m.partition()), []).append([m.offset(), m.value().decode()])
        n += 1
    return got, errors


def read_from_start(a, topic, partitions, isolation, want, timeout=20):
    """Every record of `topic` a consumer with `isolation` sees from the start."""
    c = reader(a, isolation)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got, errors = poll_records(c, want, timeout)
    c.close()
    return {"records": got, "errors": errors}


def end_offsets(a, topic, partitions):
    """ListOffsets latest of every partition, with each isolation level."""
    ad = AdminClient({"bootstrap.servers": a.bootstrap, **QUIET})
    out = {}
    for name, level in [("read_uncommitted", IsolationLevel.READ_UNCOMMITTED),
                        ("read_committed", IsolationLevel.READ_COMMITTED)]:
        tps = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
        try:
            futs = ad.list_offsets(tps, isolation_level=level)
            out[name] = {str(tp.partition): f.result(timeout=20).offset for tp, f in futs.items()}
        except KafkaException as e:
            out[name] = {"error": err_name(e)}
    return out


def error_obs(name):
    """An error as observed: its name and its category (see fenced_category)."""
    return {"error": name, "category": fenced_category(name)}


def try_call(f):
    """None if f() succeeds, else the error (and whether librdkafka calls it fatal)."""
    try:
        f()
        return None
    except KafkaException as e:
        err = e.args[0]
        return {**error_obs(err.name()), "fatal": err.fatal()}


# ---------------------------------------------------------------------------------------
def commit_abort(a):
    """Transactions A (committed), B (aborted) and C (committed) over 2 partitions."""
    create(a, a.topic, 2)
    p = txn_producer(a, "txn")
    p.init_transactions(30)
    txns = {
        "a": ("commit", [(0, "a1"), (1, "a2"), (0, "a3")]),
        "b": ("abort", [(0, "b1"), (1, "b2"), (0, "b3")]),
        "c": ("commit", [(0, "c1"), (1, "c2")]),
    }
    delivered, ended = {}, {}
    for name, (end, records) in txns.items():
        p.begin_transaction()
        delivered[name] = send(p, a.topic, records)
        ended[name] = try_call(lambda: p.commit_transaction(30) if end == "commit"
                               else p.abort_transaction(30))
    return {
        "delivered": delivered,
        "ended": ended,
        "read_committed": read_from_start(a, a.topic, 2, "read_committed", 5),
        "read_uncommitted": read_from_start(a, a.topic, 2, "read_uncommitted", 8),
        "end_offsets": end_offsets(a, a.topic, 2),
    }


def offsets_in_txn(a):
    """Consume-transform-produce: round 1 commits its output and its input offsets together,
    round 2 aborts both."""
    tin, tout = f"{a.topic}-in", f"{a.topic}-out"
    create(a, tin, 1)
    create(a, tout, 1)
    send(plain_producer(a), tin, [(0, f"i{i}") for i in range(6)])
    c = reader(a, "read_committed", group=a.group, **{"session.timeout.ms": 6000,
                                                       "heartbeat.interval.ms": 300})
    c.subscribe([tin])
    p = txn_producer(a, "ctp")
    p.init_transactions(30)
    out = {}

    def committed():
        tp = c.committed([TopicPartition(tin, 0)], timeout=20)[0]
        return tp.offset if tp.error is None else tp.error.name()

    for round_, end in [("round1", "commit"), ("round2", "abort")]:
        got, errors = [], []
        deadline = time.time() + 30
        while len(got) < 3 and time.time() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                errors.append(m.error().name())
                continue
            got.append((m.offset(), m.value().decode()))
        p.begin_transaction()
        delivered = send(p, tout, [(0, f"out-{v}") for _, v in got])
        sent = try_call(lambda: p.send_offsets_to_transaction(
            [TopicPartition(tin, 0, got[-1][0] + 1)], c.consumer_group_metadata(), 30))
        ended = try_call(lambda: p.commit_transaction(30) if end == "commit"
                         else p.abort_transaction(30))
        out[round_] = {"end": end, "consumed": [o for o, _ in got], "consume_errors": errors,
                       "delivered": delivered, "send_offsets": sent, "ended": ended,
                       "committed_after": committed()}
    c.close()
    out["output_read_committed"] = read_from_start(a, tout, 1, "read_committed", 3)
    out["output_read_uncommitted"] = read_from_start(a, tout, 1, "read_uncommitted", 6)
    out["output_end_offsets"] = end_offsets(a, tout, 1)
    return out


def fencing(a):
    """P2 initialises the transactional id P1 has a transaction open under: P1 is fenced and
    its transaction aborted; P2's own transaction commits."""
    create(a, a.topic, 1)
    p1 = txn_producer(a, "zombie")
    p1.init_transactions(30)
    p1.begin_transaction()
    out = {"p1_before": send(p1, a.topic, [(0, "p1-a")])}
    p2 = txn_producer(a, "zombie")
    out["p2_init"] = try_call(lambda: p2.init_transactions(30))
    reports, raised = send_raising(p1, a.topic, [(0, "p1-b")])
    out["p1_send"] = reports
    out["p1_flush_raised"] = None if raised is None else error_obs(raised)
    out["p1_commit"] = try_call(lambda: p1.commit_transaction(30))
    p2.begin_transaction()
    out["p2_delivered"] = send(p2, a.topic, [(0, "p2-a")])
    out["p2_commit"] = try_call(lambda: p2.commit_transaction(30))
    out["read_committed"] = read_from_start(a, a.topic, 1, "read_committed", 1)
    out["read_uncommitted"] = read_from_start(a, a.topic, 1, "read_uncommitted", 2)
    out["end_offsets"] = end_offsets(a, a.topic, 1)
    return out


def lso(a):
    """An open transaction holds read_committed readers back at its first record (the last
    stable offset), also from records written after it outside any transaction."""
    create(a, a.topic, 1)
    plain = plain_producer(a)
    out = {"before": send(plain, a.topic, [(0, "n0"), (0, "n1")])}
    p = txn_producer(a, "open")
    p.init_transactions(30)
    p.begin_transaction()
    out["open_txn"] = send(p, a.topic, [(0, "t0"), (0, "t1")])
    out["after_open"] = send(plain, a.topic, [(0, "n2")])
    c = reader(a, "read_committed")
    c.assign([TopicPartition(a.topic, 0, OFFSET_BEGINNING)])
    seen, errors = poll_records(c, 3, BLOCKED_WAIT)
    out["while_open"] = {
        "read_committed": {"records": seen, "errors": errors},
        "read_uncommitted": read_from_start(a, a.topic, 1, "read_uncommitted", 5),
        "end_offsets": end_offsets(a, a.topic, 1),
        "consumer_watermarks_read_committed": list(
            c.get_watermark_offsets(TopicPartition(a.topic, 0), timeout=20, cached=False)),
    }
    out["commit"] = try_call(lambda: p.commit_transaction(30))
    seen, errors = poll_records(c, 3, 20)
    c.close()
    out["after_commit"] = {
        "same_read_committed_consumer": {"records": seen, "errors": errors},
        "end_offsets": end_offsets(a, a.topic, 1),
    }
    return out


SCENARIOS = {
    "txn-commit-abort": commit_abort,
    "txn-offsets": offsets_in_txn,
    "txn-fencing": fencing,
    "txn-lso": lso,
}

if __name__ == "__main__":
    a = dc.args(SCENARIOS)
    dc.emit(SCENARIOS[a.scenario](a))
