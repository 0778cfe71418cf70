"""Prints a consumer group's committed offsets as seen through the Kafka protocol
(OffsetFetch, via kafka-python's admin client), one "topic partition offset" line each, and
whether ListGroups lists the group."""

from kafka import KafkaAdminClient

from common import fail


def main():
    import argparse
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    a = p.parse_args()
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap)
    groups = []
    for g in admin.list_groups():
        if isinstance(g, dict):
            groups.append(g.get("group_id") or g.get("group"))
        elif isinstance(g, tuple):
            groups.append(g[0])
        else:
            groups.append(getattr(g, "group_id", g))
    if a.group not in groups:
        fail(f"ListGroups does not list {a.group!r}: {groups}")
    offsets = admin.list_group_offsets({a.group: None})[a.group]
    for tp, meta in sorted(offsets.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
        print(f"{tp.topic} {tp.partition} {meta.offset}")
    admin.close()


if __name__ == "__main__":
    main()
