"""The differential client on kafka-python 3.0 (pure Python): produce-consume, codecs (none
and gzip: the others need optional Python packages), both group scenarios, offsets-by-time,
out-of-range, admin and errors as far as its API reaches. See diff_common.py for the
contract."""

import queue
import sys
import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.structs import OffsetAndMetadata
import kafka.errors as Errors

import diff_common as dc


def err_name(e):
    """Kafka's name of an error (kafka-python's `message`, e.g. UNKNOWN_TOPIC_OR_PARTITION),
    or the exception's class for client-side ones."""
    msg = getattr(e, "message", None)
    return msg if isinstance(msg, str) and msg and msg.isupper() else type(e).__name__


def admin(a):
    return KafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=20000)


def create(a, topic, partitions, configs=None):
    ad = admin(a)
    ad.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                               topic_configs=configs or {})])
    ad.close()


def producer(a, **extra):
    kw = dict(bootstrap_servers=a.bootstrap, linger_ms=5, max_request_size=2_000_000)
    kw.update(extra)
    return KafkaProducer(**kw)


def consumer(a, group=None, topics=(), **extra):
    kw = dict(bootstrap_servers=a.bootstrap, group_id=group or a.group, enable_auto_commit=False,
              auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=300,
              # The rebalance timeout: a member that does not rejoin holds a rebalance up
              # to this long (the default is 5 minutes).
              max_poll_interval_ms=10000, fetch_max_wait_ms=100,
              # Apache Kafka creates topics asynchronously: a member that joined before its
              # metadata named the new topic's partitions got no assignment, and kafka-python
              # rejoins only when a metadata refresh (default every 5 minutes) shows them.
              metadata_max_age_ms=1000)
    kw.update(extra)
    c = KafkaConsumer(**kw)
    if topics:
        # kafka-python 3.0.12 never finishes a rejoin that its leader starts because a
        # topic's metadata arrived after its first assignment, when a short poll times out
        # between that JoinGroup and its SyncGroup (the member hangs for good, against any
        # broker). Fetching the metadata after subscribing and before the first poll, which
        # joins, keeps the first assignment complete.
        c.subscribe(list(topics))
        for t in topics:
            c.partitions_for_topic(t)
    return c


def produce_all(p, topic, recs):
    """recs: (key, value, headers, partition) -> [(partition, offset, error name)]. Headers with
    a null value are left out: kafka-python cannot send them."""
    futs = []
    for k, v, h, part in recs:
        futs.append(p.send(topic, key=k, value=v, headers=[(hk, hv) for hk, hv in h if hv is not None], partition=part))
    p.flush(60)
    out = []
    for f in futs:
        try:
            md = f.get(timeout=60)
            out.append((md.partition, md.offset, None))
        except Exception as e:  # noqa: BLE001 - the error is the observation
            out.append((None, None, err_name(e)))
    return out


def drain(c, want, timeout=30):
    got, errors = [], []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        try:
            for _, msgs in c.poll(timeout_ms=200).items():
                got.extend((m.partition, m.offset, m.key, m.value, m.headers) for m in msgs)
        except Errors.KafkaError as e:
            errors.append(err_name(e))
            break
    return got, errors


def produce_consume(a):
    create(a, a.topic, dc.PARTITIONS)
    recs = dc.records()
    reports = produce_all(producer(a), a.topic, recs)
    c = consumer(a)
    c.assign([TopicPartition(a.topic, p) for p in range(dc.PARTITIONS)])
    c.seek_to_beginning()
    got, errors = drain(c, len(recs))
    c.close()
    where, agrees = dc.key_partitions(got)
    return {
        "delivered": all(r[2] is None for r in reports),
        "delivered_where_murmur2_says": all(r[0] == dc.expected_partition(k, part)
                                            for r, (k, _, _, part) in zip(reports, recs)),
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
    names = ["none", "gzip"]
    for codec in names:
        p = producer(a, compression_type=None if codec == "none" else codec, linger_ms=50)
        reports = produce_all(p, a.topic, [(codec.encode(), v, [], 0) for v in dc.codec_values(codec)])
        p.close()
        out[codec] = {"delivered": [r[2] for r in reports].count(None), "first_offset": reports[0][1]}
    c = consumer(a)
    c.assign([TopicPartition(a.topic, 0)])
    c.seek_to_beginning()
    got, errors = drain(c, 50 * len(names))
    c.close()
    for codec in names:
        mine = [(o, v) for _, o, k, v, _ in got if k == codec.encode()]
        out[codec]["consumed"] = len(mine)
        out[codec]["values_equal"] = [v for _, v in mine] == dc.codec_values(codec)
        out[codec]["offsets"] = [o for o, _ in mine][:1] + [o for o, _ in mine][-1:]
    return {"codecs": out, "errors": errors}


def produce_spread(a, per_partition, partitions=dc.PARTITIONS):
    p = producer(a)
    produce_all(p, a.topic, [(f"k{i}".encode(), f"v{q}-{i}".encode(), [], q)
                             for q in range(partitions) for i in range(per_partition)])
    p.close()


class Member(threading.Thread):
    """A group member polling in a thread of its own (kafka-python joins and rebalances only
    inside poll); the main thread asks it to commit or close between polls."""

    def __init__(self, a, topic=None):
        super().__init__(daemon=True)
        self.c = consumer(a, topics=[topic or a.topic])
        self.lock = threading.Lock()
        self.seen = {}
        self.assigned = set()
        self.requests = queue.Queue()
        self.replies = queue.Queue()
        self.start()

    def run(self):
        while True:
            try:
                what, arg = self.requests.get_nowait()
                if what == "close":
                    self.c.close()
                    self.replies.put(None)
                    return
                try:
                    self.replies.put(arg(self.c))
                except Exception as e:  # noqa: BLE001 - handed to the main thread
                    self.replies.put(e)
            except queue.Empty:
                pass
            polled = self.c.poll(timeout_ms=100)
            with self.lock:
                self.assigned = {tp.partition for tp in self.c.assignment()}
                for _, msgs in polled.items():
                    for m in msgs:
                        self.seen.setdefault(m.partition, []).append(m.offset)

    def call(self, f):
        self.requests.put(("call", f))
        r = self.replies.get(timeout=60)
        if isinstance(r, Exception):
            raise r
        return r

    def close(self):
        self.requests.put(("close", None))
        self.replies.get(timeout=60)
        self.join()

    def state(self):
        with self.lock:
            return set(self.assigned), {p: list(o) for p, o in self.seen.items()}


def member_with_assignment(a, topic, tries=3):
    """A member that got partitions. kafka-python's member sometimes stops heartbeating
    right after its first rebalance (its session then expires, on either broker: a client
    quirk, not what the scenario observes), so a member without an assignment after 20 s is
    replaced, up to `tries` times."""
    for attempt in range(tries):
        m = Member(a, topic)
        try:
            dc.wait_until(lambda: m.state()[0], 20, "the member's assignment")
            return m
        except TimeoutError:
            m.close()
            if attempt == tries - 1:
                raise
            print(f"kafka-python member got no assignment; trying again ({attempt + 1})", file=sys.stderr)


def group_split_takeover(a):
    n = 10
    create(a, a.topic, dc.PARTITIONS)
    members = [member_with_assignment(a, a.topic)]
    members.append(Member(a))

    def split():
        x, y = members[0].state()[0], members[1].state()[0]
        return x and y and not (x & y) and (x | y) == set(range(dc.PARTITIONS))

    dc.wait_until(split, 45, "the split")
    sizes = sorted(len(m.state()[0]) for m in members)
    # Records are produced only now, so no member read any before the split.
    produce_spread(a, n)
    target = {p: 2 + p for p in range(dc.PARTITIONS)}

    def consumed_part():
        for m in members:
            mine, seen = m.state()
            if not all(max(seen.get(p, [-1])) + 1 >= target[p] for p in mine):
                return False
        return True

    dc.wait_until(consumed_part, 30, "each member consuming part")
    commit_errors = []
    for m in members:
        mine = sorted(m.state()[0])
        try:
            m.call(lambda c, mine=mine: c.commit(
                {TopicPartition(a.topic, p): OffsetAndMetadata(target[p], "", -1) for p in mine}))
        except Errors.KafkaError as e:
            commit_errors.append(err_name(e))
    # Member 1 dies: close() sends LeaveGroup.
    dead, seen1 = members[1].state()
    members[1].close()
    survivor = members[0]
    _, before = survivor.state()
    everything = set(range(dc.PARTITIONS))

    def after():
        _, seen = survivor.state()
        return {p: seen.get(p, [])[len(before.get(p, [])):] for p in everything}

    def took_over():
        aft = after()
        return survivor.state()[0] == everything and all(aft[p] and aft[p][-1] == n - 1 for p in dead)

    dc.wait_until(took_over, 45, "the takeover")
    time.sleep(0.5)
    aft = after()
    committed = survivor.call(lambda c: {str(p): c.committed(TopicPartition(a.topic, p)) for p in range(dc.PARTITIONS)})
    final = sorted(survivor.state()[0])
    survivor.close()

    def everything_read(p):
        return before.get(p, []) + seen1.get(p, []) + aft[p]

    return {
        "split_sizes": sizes,
        "death": "close (LeaveGroup)",
        "commit_errors": commit_errors,
        "committed": committed,
        "after_takeover_assigned": final,
        "taken_over": len(dead),
        "taken_over_first_offsets": sorted(
            "committed" if aft[p][:1] == [target[p]] else f"{aft[p][:1]} != {target[p]}" for p in dead),
        "no_gaps": all(set(everything_read(p)) == set(range(n)) for p in everything),
        "duplicates_only_uncommitted": all(
            o >= target[p] for p in everything
            for o in {x for x in everything_read(p) if everything_read(p).count(x) > 1}),
    }


def group_restart_resume(a):
    n = 15
    create(a, a.topic, 2)
    produce_spread(a, n, partitions=2)
    target = {0: 4, 1: 7}
    c = consumer(a, topics=[a.topic])
    seen = {}

    def consumed():
        for _, msgs in c.poll(timeout_ms=100).items():
            for m in msgs:
                seen.setdefault(m.partition, []).append(m.offset)
        return all(max(seen.get(p, [-1])) + 1 >= t for p, t in target.items())

    dc.wait_until(consumed, 30, "the first member consuming")
    c.commit({TopicPartition(a.topic, p): OffsetAndMetadata(t, "", -1) for p, t in target.items()})
    c.close()
    c = consumer(a, topics=[a.topic])
    committed = {str(p): c.committed(TopicPartition(a.topic, p)) for p in range(2)}
    got, errors = drain(c, sum(n - t for t in target.values()), timeout=45)
    extra, _ = drain(c, 1, timeout=0.5)
    c.close()
    per = {}
    for p, o, _, _, _ in got + extra:
        per.setdefault(p, []).append(o)
    return {
        "committed_before_restart": committed,
        "first_after_restart": {str(p): o[0] for p, o in sorted(per.items())},
        "rest_exactly_once": {str(p): dc.contiguous(o, target[p], n) for p, o in sorted(per.items())},
        "errors": errors,
    }


def offsets_by_time(a):
    create(a, a.topic, 1)
    p = producer(a, linger_ms=1000)
    for i, ts in enumerate(dc.TIMESTAMPS):
        p.send(a.topic, key=b"t", value=str(i).encode(), partition=0, timestamp_ms=ts)
    p.flush(30)
    p.close()
    c = consumer(a)
    tp = TopicPartition(a.topic, 0)
    out = {}
    for name, ts in dc.LOOKUPS.items():
        r = c.offsets_for_times({tp: ts})[tp]
        out[name] = None if r is None else {"offset": r.offset, "timestamp": r.timestamp}
    out["earliest"] = c.beginning_offsets([tp])[tp]
    out["latest"] = c.end_offsets([tp])[tp]
    c.close()
    return out


def out_of_range(a):
    create(a, a.topic, 1)
    produce_spread(a, 5, partitions=1)
    out = {}
    tp = TopicPartition(a.topic, 0)
    for policy in ["none", "earliest", "latest"]:
        group = f"{a.group}-{policy}"
        setter = consumer(a, group=group)
        try:
            setter.commit({tp: OffsetAndMetadata(100, "", -1)})
            commit = None
        except Errors.KafkaError as e:
            commit = err_name(e)
        setter.close()
        c = consumer(a, group=group, topics=[a.topic], auto_offset_reset=policy)
        obs = {"commit_past_end": commit}
        if policy == "latest":
            deadline = time.time() + 3
            while time.time() < deadline:
                c.poll(timeout_ms=100)
            produce_spread(a, 1, partitions=1)
        got, errors = drain(c, 1, timeout=30)
        obs["first_offset"] = got[0][1] if got else None
        obs["errors"] = sorted(set(errors))
        c.close()
        out[policy] = obs
    c = consumer(a, group=f"{a.group}-seek")
    c.assign([tp])
    c.seek(tp, 1000)
    got, errors = drain(c, 1, timeout=30)
    c.close()
    out["seek_past_end_earliest"] = {"first_offset": got[0][1] if got else None, "errors": sorted(set(errors))}
    return out


def admin_scenario(a):
    ad = admin(a)
    ta, tb = f"{a.topic}-a", f"{a.topic}-b"
    names = {ta: "a", tb: "b"}
    out = {}
    try:
        ad.create_topics([NewTopic(ta, num_partitions=3, replication_factor=1, topic_configs={"retention.ms": "3600000"}),
                          NewTopic(tb, num_partitions=1, replication_factor=1)])
        out["create"] = None
    except Errors.KafkaError as e:
        out["create"] = err_name(e)
    try:
        ad.create_topics([NewTopic(ta, num_partitions=3, replication_factor=1)])
        out["create_again"] = None
    except Errors.KafkaError as e:
        out["create_again"] = err_name(e)
    dc.wait_until(lambda: {ta, tb} <= set(ad.list_topics()), 20, "both topics listed")
    out["list"] = {names[t["name"]]: len(t["partitions"]) for t in ad.describe_topics([ta, tb])}
    d = ad.describe_topics([ta])[0]
    out["describe_topic"] = {
        "error_code": d.get("error_code"),
        "internal": d.get("is_internal"),
        "partitions": sorted([{"id": p["partition_index"], "replicas": len(p["replica_nodes"]),
                               "isr": len(p["isr_nodes"]), "has_leader": p["leader_id"] >= 0,
                               "error_code": p["error_code"]} for p in d["partitions"]], key=lambda p: p["id"]),
    }
    try:
        ad.delete_topics([tb])
        out["delete"] = None
        try:
            dc.wait_until(lambda: tb not in ad.list_topics(), 20, "topic b gone")
            out["deleted_gone"] = True
        except TimeoutError:
            out["deleted_gone"] = False
    except Errors.KafkaError as e:
        out["delete"] = err_name(e)
    topic_keys = ["cleanup.policy", "retention.ms", "retention.bytes", "max.message.bytes",
                  "segment.bytes", "segment.ms", "message.timestamp.type", "compression.type",
                  "min.insync.replicas"]
    broker_keys = ["auto.create.topics.enable", "num.partitions", "default.replication.factor",
                   "message.max.bytes", "log.segment.bytes", "log.retention.bytes",
                   "log.cleanup.policy", "min.insync.replicas"]

    def configs(rtype, name, keys):
        try:
            r = ad.describe_configs([ConfigResource(rtype, name)], config_filter="all")
            vals = next(iter(next(iter(r.values())).values()))
            return {k: ({"value": vals[k].get("value") if isinstance(vals[k], dict) else vals[k]} if k in vals else "absent")
                    for k in keys}
        except Errors.KafkaError as e:
            return {"error": err_name(e)}

    out["topic_configs"] = configs(ConfigResourceType.TOPIC, ta, topic_keys)
    node = ad.describe_cluster()["brokers"][0]["broker_id"]
    out["broker_configs"] = configs(ConfigResourceType.BROKER, str(node), broker_keys)
    p = producer(a)
    produce_all(p, ta, [(b"k", b"v", [], part) for part in range(3) for _ in range(4)])
    p.close()
    c = consumer(a)
    c.commit({TopicPartition(ta, 0): OffsetAndMetadata(1, "", -1), TopicPartition(ta, 1): OffsetAndMetadata(3, "", -1)})
    c.close()

    def group_view():
        v = {}
        try:
            mine = [g for g in ad.list_groups() if g["group_id"] == a.group]
            v["listed"] = [{"state": g.get("group_state"), "protocol_type": g.get("protocol_type")} for g in mine]
        except Errors.KafkaError as e:
            v["listed"] = {"error": err_name(e)}
        try:
            g = ad.describe_groups([a.group])[a.group]
            v["describe"] = {"error_code": g.get("error_code"), "state": g.get("group_state"),
                             "protocol_type": g.get("protocol_type"), "protocol": g.get("protocol_data"),
                             "members": len(g.get("members", []))}
        except Errors.KafkaError as e:
            v["describe"] = {"error": err_name(e)}
        try:
            r = ad.list_group_offsets({a.group: None})[a.group]
            v["offsets"] = {f"{names.get(tp.topic, '?')}/{tp.partition}": om.offset for tp, om in r.items()}
        except Errors.KafkaError as e:
            v["offsets"] = {"error": err_name(e)}
        return v

    out["group_empty"] = group_view()
    m = member_with_assignment(a, ta)
    out["group_active"] = group_view()
    m.close()
    try:
        cl = ad.describe_cluster()
        out["cluster"] = {"nodes": len(cl["brokers"]), "has_cluster_id": bool(cl.get("cluster_id")),
                          "controller_is_a_node": cl.get("controller_id") in [b["broker_id"] for b in cl["brokers"]]}
    except Errors.KafkaError as e:
        out["cluster"] = {"error": err_name(e)}
    ad.close()
    return out


def errors(a):
    out = {}
    missing = f"{a.topic}-missing"
    ad = admin(a)
    try:
        d = ad.describe_topics([missing])
        out["metadata_unknown"] = [Errors.for_code(t["error_code"]).message for t in d]
    except Errors.KafkaError as e:
        out["metadata_unknown"] = err_name(e)
    p = producer(a, max_block_ms=5000)
    try:
        p.send(missing, key=b"k", value=b"v").get(timeout=10)
        out["produce_unknown"] = None
    except Exception as e:  # noqa: BLE001 - the error is the observation
        out["produce_unknown"] = err_name(e)
    p.close()
    create(a, a.topic, 1)
    p = producer(a, max_request_size=3_000_000, retries=0)
    out["oversize"] = produce_all(p, a.topic, [(b"big", bytes(dc.OVERSIZE), [], 0)])[0][2]
    r = produce_all(p, a.topic, [(b"small", b"fits", [], 0)])[0]
    out["after_oversize"] = {"error": r[2], "offset": r[1]}
    p.close()
    tp = TopicPartition(a.topic, 0)
    try:
        r = ad.delete_records({tp: 1})
        out["unsupported_api"] = {"api": "DeleteRecords", "result": {"low_watermark": r[tp]["low_watermark"]}}
    except Exception as e:  # noqa: BLE001 - the error is the observation
        out["unsupported_api"] = {"api": "DeleteRecords", "result": {"error": err_name(e)}}
    out["after_unsupported_api"] = a.topic in ad.list_topics()
    ad.close()
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
}

if __name__ == "__main__":
    a = dc.args(SCENARIOS)
    dc.emit(SCENARIOS[a.scenario](a))
