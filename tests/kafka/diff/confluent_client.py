"""The differential client on confluent-kafka (librdkafka 2.16): every scenario.
See diff_common.py for the contract."""

import time

from confluent_kafka import (Consumer, KafkaError, KafkaException, OFFSET_BEGINNING, Producer,
                             TopicCollection, TopicPartition)
from confluent_kafka.admin import (AdminClient, ConfigResource, NewTopic, OffsetSpec,
                                   ResourceType)

import diff_common as dc

QUIET = {"log_level": 3}


def err_name(e):
    """The name of a KafkaError/KafkaException (librdkafka's, e.g. UNKNOWN_TOPIC_OR_PART)."""
    if isinstance(e, KafkaException):
        e = e.args[0]
    if isinstance(e, KafkaError):
        return e.name()
    return type(e).__name__


def admin(a):
    return AdminClient({"bootstrap.servers": a.bootstrap, **QUIET})


def create(a, topic, partitions, config=None):
    ad = admin(a)
    for _, f in ad.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})]).items():
        f.result(timeout=20)
    dc.wait_until(lambda: topic in ad.list_topics(timeout=10).topics, 20, "topic metadata")


def producer(a, **extra):
    return Producer({"bootstrap.servers": a.bootstrap, "partitioner": "murmur2_random",
                     "linger.ms": 5, "message.max.bytes": 2_000_000, **QUIET, **extra})


def consumer(a, group=None, **extra):
    return Consumer({"bootstrap.servers": a.bootstrap, "group.id": group or a.group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
                     # The rebalance timeout (default 5 minutes).
                     "max.poll.interval.ms": 10000, "fetch.wait.max.ms": 100, **QUIET, **extra})


def produce_all(p, topic, recs):
    """recs: (key, value, headers, partition); returns delivery reports
    [(partition, offset, error name)] in send order."""
    reports = [None] * len(recs)

    def cb(i):
        def on_delivery(err, msg):
            reports[i] = (msg.partition(), msg.offset(), None if err is None else err.name())
        return on_delivery

    for i, (k, v, h, part) in enumerate(recs):
        kw = {"key": k, "value": v, "headers": h, "on_delivery": cb(i)}
        if part is not None:
            kw["partition"] = part
        p.produce(topic, **kw)
        p.poll(0)
    p.flush(60)
    return reports


def drain(c, want, timeout=30, stop_on_error=False):
    """Polls until `want` records came (or timeout, or an error if `stop_on_error`); returns
    (partition, offset, key, value, headers) tuples and the error names seen."""
    got, errors = [], []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            errors.append(m.error().name())
            if stop_on_error:
                break
            continue
        got.append((m.partition(), m.offset(), m.key(), m.value(), m.headers()))
    return got, errors


# ---------------------------------------------------------------------------------------
def produce_consume(a):
    create(a, a.topic, dc.PARTITIONS)
    recs = dc.records()
    reports = produce_all(producer(a), a.topic, recs)
    delivery_ok = all(r is not None and r[2] is None for r in reports)
    where_sent = all(r[0] == dc.expected_partition(k, part) for r, (k, _, _, part) in zip(reports, recs))
    c = consumer(a)
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in range(dc.PARTITIONS)])
    got, errors = drain(c, len(recs))
    c.close()
    where, agrees = dc.key_partitions([(p, o, k, v, h) for p, o, k, v, h in got])
    return {
        "delivered": delivery_ok,
        "delivered_where_murmur2_says": where_sent,
        "delivery_offsets": [r[1] for r in reports],
        "consumed": len(got),
        "errors": errors,
        "partitions": dc.per_partition(got),
        "key_partition": where,
        "murmur2_agrees": agrees,
    }


def codecs(a):
    create(a, a.topic, 1)
    out = {}
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        vals = dc.codec_values(codec)
        p = producer(a, **{"compression.type": codec, "linger.ms": 50})
        reports = produce_all(p, a.topic, [(codec.encode(), v, [], 0) for v in vals])
        out[codec] = {"delivered": [r[2] for r in reports].count(None),
                      "first_offset": reports[0][1]}
    c = consumer(a)
    c.assign([TopicPartition(a.topic, 0, OFFSET_BEGINNING)])
    got, errors = drain(c, 250)
    c.close()
    for codec in out:
        mine = [(o, v) for _, o, k, v, _ in got if k == codec.encode()]
        out[codec]["consumed"] = len(mine)
        out[codec]["values_equal"] = [v for _, v in mine] == dc.codec_values(codec)
        out[codec]["offsets"] = [o for o, _ in mine][:1] + [o for o, _ in mine][-1:]
    return {"codecs": out, "errors": errors}


def produce_spread(a, per_partition, partitions=dc.PARTITIONS):
    recs = [(f"k{i}".encode(), f"v{p}-{i}".encode(), [], p)
            for p in range(partitions) for i in range(per_partition)]
    produce_all(producer(a), a.topic, recs)


def group_split_takeover(a):
    n = 10
    create(a, a.topic, dc.PARTITIONS)
    assigned = [set(), set()]
    seen = [dict(), dict()]  # per member: partition -> offsets consumed
    members = []
    for i in range(2):
        c = consumer(a)

        def on_assign(_c, parts, i=i):
            assigned[i] = {tp.partition for tp in parts}

        def on_revoke(_c, parts, i=i):
            assigned[i] = set()

        c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
        members.append(c)
        if i == 0:
            dc.wait_until(lambda: [m.poll(0.05) for m in members] and assigned[0], 30, "first assignment")
    target = {p: 2 + p for p in range(dc.PARTITIONS)}

    def pump():
        for i, m in enumerate(members):
            msg = m.poll(0.05)
            if msg is not None and not msg.error():
                seen[i].setdefault(msg.partition(), []).append(msg.offset())

    def split():
        pump()
        x, y = assigned
        return x and y and not (x & y) and (x | y) == set(range(dc.PARTITIONS))

    dc.wait_until(split, 45, "the split")
    # Records are produced only now, so no member read any before the split.
    produce_spread(a, n)
    sizes = sorted(len(s) for s in assigned)
    # Each member consumes part of each of its partitions, then commits the offset after
    # the first (2 + partition) records: deterministic whatever partitions it was given.

    def consumed_part():
        pump()
        return all(max(seen[i].get(p, [-1])) + 1 >= target[p] for i in range(2) for p in assigned[i])

    dc.wait_until(consumed_part, 30, "each member consuming part")
    commit_errors = []
    for i, m in enumerate(members):
        offs = [TopicPartition(a.topic, p, target[p]) for p in sorted(assigned[i])]
        try:
            m.commit(offsets=offs, asynchronous=False)
        except KafkaException as e:
            commit_errors.append(err_name(e))
    # Member 1 dies: close() sends LeaveGroup (librdkafka always leaves on close).
    dead = sorted(assigned[1])
    members[1].close()
    survivor = members[0]
    after = {}

    everything = set(range(dc.PARTITIONS))

    def complete():
        return all(after.get(p, [-1])[-1] == n - 1 for p in dead) and all(max(seen[0].get(p, []) + seen[1].get(p, []) + after.get(p, []) + [-1]) == n - 1
                   for p in everything)

    def took_over():
        # The rebalance runs inside poll() (on_assign), before it returns any record of the
        # new assignment.
        msg = survivor.poll(0.1)
        if msg is not None and not msg.error():
            (after if assigned[0] == everything else seen[0]).setdefault(msg.partition(), []).append(msg.offset())
        return assigned[0] == everything and complete()

    dc.wait_until(took_over, 45, "the takeover")
    extra, _ = drain(survivor, 1, timeout=0.5)
    for p, o, _, _, _ in extra:
        after.setdefault(p, []).append(o)
    committed = {str(tp.partition): tp.offset for tp in
                 survivor.committed([TopicPartition(a.topic, p) for p in range(dc.PARTITIONS)], timeout=10)}
    final = sorted(assigned[0])
    survivor.close()
    return {
        "split_sizes": sizes,
        "death": "close (LeaveGroup)",
        "commit_errors": commit_errors,
        "committed": committed,
        "after_takeover_assigned": final,
        # The partitions the dead member held: the survivor starts them at the commits.
        "taken_over": len(dead),
        "taken_over_first_offsets": sorted(
            "committed" if after.get(p, [None])[0] == target[p] else f"{after.get(p, [None])[0]} != {target[p]}"
            for p in dead),
        # Over both members and the takeover, every record was read, and only those at or
        # after a committed offset were read twice.
        "no_gaps": all(set(seen[0].get(p, []) + seen[1].get(p, []) + after.get(p, [])) == set(range(n))
                       for p in everything),
        "duplicates_only_uncommitted": all(
            o >= target[p] for p in everything
            for o in {x for x in seen[0].get(p, []) + seen[1].get(p, []) + after.get(p, [])
                      if (seen[0].get(p, []) + seen[1].get(p, []) + after.get(p, [])).count(x) > 1}),
    }


def group_restart_resume(a):
    n = 15
    create(a, a.topic, 2)
    produce_spread(a, n, partitions=2)
    target = {0: 4, 1: 7}
    c = consumer(a)
    c.subscribe([a.topic])
    seen = {}

    def consumed():
        m = c.poll(0.1)
        if m is not None and not m.error():
            seen.setdefault(m.partition(), []).append(m.offset())
        return all(max(seen.get(p, [-1])) + 1 >= t for p, t in target.items())

    dc.wait_until(consumed, 30, "the first member consuming")
    c.commit(offsets=[TopicPartition(a.topic, p, t) for p, t in target.items()], asynchronous=False)
    c.close()
    c = consumer(a)
    committed = c.committed([TopicPartition(a.topic, p) for p in range(2)], timeout=10)
    c.subscribe([a.topic])
    got, errors = drain(c, sum(n - t for t in target.values()), timeout=45)
    time.sleep(0.5)
    extra, _ = drain(c, 1, timeout=0.5)
    c.close()
    per = {}
    for p, o, _, _, _ in got + extra:
        per.setdefault(p, []).append(o)
    return {
        "committed_before_restart": {str(tp.partition): tp.offset for tp in committed},
        "first_after_restart": {str(p): o[0] for p, o in sorted(per.items())},
        "rest_exactly_once": {str(p): dc.contiguous(o, target[p], n) for p, o in sorted(per.items())},
        "errors": errors,
    }


def offsets_by_time(a):
    create(a, a.topic, 1)
    p = producer(a, **{"linger.ms": 1000})
    # One batch: the lookups must find records inside a batch, not only batch boundaries.
    for i, ts in enumerate(dc.TIMESTAMPS):
        p.produce(a.topic, key=b"t", value=str(i).encode(), partition=0, timestamp=ts)
    p.flush(30)
    ad = admin(a)
    tp = TopicPartition(a.topic, 0)

    def lookup(spec):
        try:
            fut = ad.list_offsets({tp: spec})
            r = fut[tp].result(timeout=20)
            return {"offset": r.offset, "timestamp": r.timestamp}
        except KafkaException as e:
            return {"error": err_name(e)}

    out = {name: lookup(OffsetSpec.for_timestamp(ts)) for name, ts in dc.LOOKUPS.items()}
    out["earliest"] = lookup(OffsetSpec.earliest())
    out["latest"] = lookup(OffsetSpec.latest())
    out["max_timestamp"] = lookup(OffsetSpec.max_timestamp())
    # The consumer's view: offsets_for_times and the watermarks (ListOffsets -2/-1).
    c = consumer(a)
    out["consumer_offsets_for_times"] = {
        name: c.offsets_for_times([TopicPartition(a.topic, 0, ts)], timeout=20)[0].offset
        for name, ts in dc.LOOKUPS.items()}
    out["consumer_watermarks"] = list(c.get_watermark_offsets(tp, timeout=20))
    c.close()
    return out


def out_of_range(a):
    create(a, a.topic, 1)
    produce_spread(a, 5, partitions=1)
    out = {}
    for policy in ["none", "earliest", "latest"]:
        group = f"{a.group}-{policy}"
        setter = consumer(a, group=group)
        try:
            setter.commit(offsets=[TopicPartition(a.topic, 0, 100)], asynchronous=False)
            commit = None
        except KafkaException as e:
            commit = err_name(e)
        setter.close()
        # librdkafka spells Kafka's "none" "error".
        c = consumer(a, group=group, **{"auto.offset.reset": "error" if policy == "none" else policy})
        c.subscribe([a.topic])
        obs = {"commit_past_end": commit}
        if policy == "latest":
            deadline = time.time() + 3
            while time.time() < deadline:
                c.poll(0.1)
            produce_spread(a, 1, partitions=1)
        got, errors = drain(c, 1, timeout=30, stop_on_error=True)
        obs["first_offset"] = got[0][1] if got else None
        obs["errors"] = sorted(set(errors))
        c.close()
        out[policy] = obs
    # A seek (assign) past the end, with earliest.
    c = consumer(a, group=f"{a.group}-seek")
    c.assign([TopicPartition(a.topic, 0, 1000)])
    got, errors = drain(c, 1, timeout=30)
    c.close()
    out["seek_past_end_earliest"] = {"first_offset": got[0][1] if got else None, "errors": sorted(set(errors))}
    return out


def admin_scenario(a):
    ad = admin(a)
    ta, tb = f"{a.topic}-a", f"{a.topic}-b"
    names = {ta: "a", tb: "b"}
    out = {}
    fs = ad.create_topics([NewTopic(ta, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"}),
                           NewTopic(tb, num_partitions=1, replication_factor=1)])
    out["create"] = {names[t]: (None if f.exception(timeout=20) is None else err_name(f.exception()))
                     for t, f in fs.items()}
    f = ad.create_topics([NewTopic(ta, num_partitions=3, replication_factor=1)])[ta]
    out["create_again"] = None if f.exception(timeout=20) is None else err_name(f.exception())
    dc.wait_until(lambda: {ta, tb} <= set(ad.list_topics(timeout=10).topics), 20, "both topics listed")
    md = ad.list_topics(timeout=10)
    out["list"] = {names[t]: len(md.topics[t].partitions) for t in (ta, tb)}
    out["brokers"] = len(md.brokers)
    try:
        d = ad.describe_topics(TopicCollection([ta]))[ta].result(timeout=20)
        out["describe_topic"] = {
            "internal": d.is_internal,
            "partitions": [{"id": p.id, "replicas": len(p.replicas), "isr": len(p.isr),
                            "has_leader": p.leader is not None} for p in d.partitions],
        }
    except KafkaException as e:
        out["describe_topic"] = {"error": err_name(e)}
    # DeleteTopics, then the topic is gone from Metadata.
    f = ad.delete_topics([tb], operation_timeout=20)[tb]
    out["delete"] = None if f.exception(timeout=30) is None else err_name(f.exception())
    if out["delete"] is None:
        try:
            dc.wait_until(lambda: tb not in ad.list_topics(timeout=10).topics, 20, "topic b gone")
            out["deleted_gone"] = True
        except TimeoutError:
            out["deleted_gone"] = False
    # DescribeConfigs of a topic and of the broker: the values clients commonly read.
    topic_keys = ["cleanup.policy", "retention.ms", "retention.bytes", "max.message.bytes",
                  "segment.bytes", "segment.ms", "message.timestamp.type", "compression.type",
                  "min.insync.replicas"]
    broker_keys = ["auto.create.topics.enable", "num.partitions", "default.replication.factor",
                   "message.max.bytes", "log.segment.bytes", "log.retention.bytes",
                   "log.cleanup.policy", "min.insync.replicas"]

    def configs(res, keys, with_default):
        # is_default only where it does not depend on the reference broker's
        # server.properties (scripts/kafka.sh sets min.insync.replicas, num.partitions, ...).
        try:
            r = ad.describe_configs([res])[res].result(timeout=20)
            return {k: ({"value": r[k].value, **({"default": r[k].is_default} if k in with_default else {})}
                        if k in r else "absent")
                    for k in keys}
        except KafkaException as e:
            return {"error": err_name(e)}

    out["topic_configs"] = configs(ConfigResource(ResourceType.TOPIC, ta), topic_keys,
                                   set(topic_keys) - {"min.insync.replicas"})
    node = next(iter(md.brokers))
    out["broker_configs"] = configs(ConfigResource(ResourceType.BROKER, str(node)), broker_keys, set())
    # A group with committed offsets: what lag tools (kminion, Burrow) call.
    p = producer(a)
    produce_all(p, ta, [(b"k", b"v", [], part) for part in range(3) for _ in range(4)])
    c = consumer(a)
    c.commit(offsets=[TopicPartition(ta, 0, 1), TopicPartition(ta, 1, 3)], asynchronous=False)
    c.close()

    def group_view():
        v = {}
        r = ad.list_consumer_groups().result(timeout=20)
        mine = [g for g in r.valid if g.group_id == a.group]
        v["listed"] = [{"simple": g.is_simple_consumer_group, "state": str(g.state)} for g in mine]
        try:
            g = ad.describe_consumer_groups([a.group])[a.group].result(timeout=20)
            v["describe"] = {"state": str(g.state), "members": len(g.members),
                             "protocol": g.partition_assignor, "simple": g.is_simple_consumer_group,
                             "assigned": sorted(len(m.assignment.topic_partitions) for m in g.members)}
        except KafkaException as e:
            v["describe"] = {"error": err_name(e)}
        from confluent_kafka import ConsumerGroupTopicPartitions
        try:
            r = ad.list_consumer_group_offsets([ConsumerGroupTopicPartitions(a.group)])[a.group].result(timeout=20)
            v["offsets"] = {f"{names.get(tp.topic, '?')}/{tp.partition}": tp.offset for tp in r.topic_partitions}
        except KafkaException as e:
            v["offsets"] = {"error": err_name(e)}
        return v

    out["group_empty"] = group_view()
    # The same group with one live member.
    c = consumer(a)
    assigned = []
    c.subscribe([ta], on_assign=lambda _c, parts: assigned.extend(parts))
    dc.wait_until(lambda: c.poll(0.1) is None and assigned, 30, "the member's assignment")
    out["group_active"] = group_view()
    c.close()
    try:
        cl = ad.describe_cluster().result(timeout=20)
        out["cluster"] = {"nodes": len(cl.nodes), "has_cluster_id": bool(cl.cluster_id),
                          "controller_is_a_node": cl.controller is not None and cl.controller.id in [n.id for n in cl.nodes]}
    except KafkaException as e:
        out["cluster"] = {"error": err_name(e)}
    return out


def errors(a):
    out = {}
    missing = f"{a.topic}-missing"
    # Metadata of an unknown topic (auto-creation is off on both brokers).
    ad = admin(a)
    md = ad.list_topics(missing, timeout=10)
    t = md.topics.get(missing)
    out["metadata_unknown"] = None if t is None or t.error is None else t.error.name()
    # Produce to it.
    p = producer(a, **{"message.timeout.ms": 5000, "topic.metadata.propagation.max.ms": 1000})
    reports = produce_all(p, missing, [(b"k", b"v", [], None)])
    out["produce_unknown"] = reports[0][2] if reports[0] else "no report"
    # Subscribe to it.
    c = consumer(a, **{"topic.metadata.refresh.interval.ms": 1000})
    c.subscribe([missing])
    _, errs = drain(c, 1, timeout=6, stop_on_error=True)
    c.close()
    out["consume_unknown"] = sorted(set(errs))
    # An oversize record: over the default max.message.bytes (1048588), uncompressed.
    create(a, a.topic, 1)
    p = producer(a, **{"message.max.bytes": 3_000_000, "compression.type": "none"})
    reports = produce_all(p, a.topic, [(b"big", bytes(dc.OVERSIZE), [], 0)])
    out["oversize"] = reports[0][2] if reports[0] else "no report"
    reports = produce_all(p, a.topic, [(b"small", b"fits", [], 0)])
    out["after_oversize"] = {"error": reports[0][2], "offset": reports[0][1]}
    # An API Rill does not serve: DeleteRecords.
    ad = admin(a)
    tp = TopicPartition(a.topic, 0, 1)
    try:
        r = ad.delete_records([tp])[tp].result(timeout=20)
        out["unsupported_api"] = {"api": "DeleteRecords", "result": {"low_watermark": r.low_watermark}}
    except KafkaException as e:
        out["unsupported_api"] = {"api": "DeleteRecords", "result": {"error": err_name(e)}}
    # The connection is still usable afterwards.
    out["after_unsupported_api"] = len(ad.list_topics(a.topic, timeout=10).topics[a.topic].partitions)
    return out


def compaction(a):
    """Compacted topics as clients see them: creation with the cleanup configs (and a bad
    one), DescribeConfigs, a null key refused, keyed records and tombstones accepted and
    read back. Whether and when the cleaner runs is the broker's business and not compared."""
    ad = admin(a)
    out = {}
    topic_keys = ["cleanup.policy", "delete.retention.ms", "min.compaction.lag.ms"]
    fs = ad.create_topics([NewTopic(a.topic, num_partitions=1, replication_factor=1,
                                    config={"cleanup.policy": "compact",
                                            "delete.retention.ms": "5000",
                                            "min.compaction.lag.ms": "100"}),
                           NewTopic(f"{a.topic}-both", num_partitions=1, replication_factor=1,
                                    config={"cleanup.policy": "compact,delete"}),
                           NewTopic(f"{a.topic}-bad", num_partitions=1, replication_factor=1,
                                    config={"cleanup.policy": "compost"})])
    names = {a.topic: "compact", f"{a.topic}-both": "both", f"{a.topic}-bad": "bad"}
    out["create"] = {names[t]: (None if f.exception(timeout=20) is None else err_name(f.exception()))
                     for t, f in fs.items()}
    dc.wait_until(lambda: a.topic in ad.list_topics(timeout=10).topics, 20, "topic metadata")
    for t in (a.topic, f"{a.topic}-both"):
        res = ConfigResource(ResourceType.TOPIC, t)
        try:
            r = ad.describe_configs([res])[res].result(timeout=20)
            out[f"configs_{names[t]}"] = {k: ({"value": r[k].value, "default": r[k].is_default}
                                              if k in r else "absent") for k in topic_keys}
        except KafkaException as e:
            out[f"configs_{names[t]}"] = {"error": err_name(e)}
    p = producer(a, **{"message.timeout.ms": 10000})
    reports = produce_all(p, a.topic, [(None, b"no key", [], 0)])
    out["null_key"] = reports[0][2] if reports[0] else "no report"
    reports = produce_all(p, a.topic, [(b"k1", b"v1", [], 0), (b"k2", b"v2", [], 0),
                                       (b"k1", b"v1b", [], 0), (b"k2", None, [], 0)])
    out["keyed"] = [{"offset": r[1], "error": r[2]} for r in reports]
    c = consumer(a)
    c.assign([TopicPartition(a.topic, 0, 0)])
    got, errs = drain(c, 4, timeout=20)
    c.close()
    out["read"] = [{"offset": o, "key": k.decode() if k else None,
                    "value": v.decode() if v is not None else None} for (_, o, k, v, _) in got]
    out["read_errors"] = sorted(set(errs))
    return out


SCENARIOS = {
    "produce-consume": produce_consume,
    "codecs": codecs,
    "group-split-takeover": group_split_takeover,
    "group-restart-resume": group_restart_resume,
    "offsets-by-time": offsets_by_time,
    "out-of-range": out_of_range,
    "admin": admin_scenario,
    "errors": errors,
    "compaction": compaction,
}

if __name__ == "__main__":
    a = dc.args(SCENARIOS)
    dc.emit(SCENARIOS[a.scenario](a))
