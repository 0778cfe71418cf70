"""A JSON Schema typed handler between confluent-kafka's JSON serdes, unchanged: orders
written with JSONSerializer (auto-registering the writer's schema, which has a field the
handler's reader does not), then the handler's shipments read back from their topic with a
JSONDeserializer that has no schema of its own, so it fetches each record's writer schema
by the id in its framing and validates the record against it.

Prints one JSON line: the shipments read, in order, and the ids their framing carried."""

import json
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from common import fail, parser

ORDER = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "OrderCreated", "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "customer": {"type": "string"},
        "total_cents": {"type": "integer", "minimum": 0},
    },
    "required": ["order_id", "customer", "total_cents"],
})


def main():
    p = parser(__doc__)
    p.add_argument("--registry", required=True)
    p.add_argument("--output", required=True, help="the topic the handler writes to")
    p.add_argument("--count", type=int, default=40)
    a = p.parse_args()
    sr = SchemaRegistryClient({"url": a.registry})
    ser = JSONSerializer(ORDER, sr)
    prod = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5})
    errors = []
    ctx = SerializationContext(a.topic, MessageField.VALUE)
    for i in range(a.count):
        order = {"order_id": f"j-{i}", "customer": f"c-{i}", "total_cents": 500 * i}
        prod.produce(a.topic, key=order["order_id"].encode(), value=ser(order, ctx),
                     on_delivery=lambda e, _m: e and errors.append(e))
        prod.poll(0)
    if prod.flush(30) != 0 or errors:
        fail(f"delivery failed: {errors[:3]}")

    de = JSONDeserializer(None, schema_registry_client=sr)
    cons = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "json-orders-check",
                     "enable.auto.commit": False})
    cons.assign([TopicPartition(a.output, 0, 0)])
    out_ctx = SerializationContext(a.output, MessageField.VALUE)
    shipments, ids = [], set()
    deadline = time.time() + 60
    while len(shipments) < a.count and time.time() < deadline:
        m = cons.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail(f"consume: {m.error()}")
        raw = m.value()
        ids.add(int.from_bytes(raw[1:5], "big"))
        shipments.append(de(raw, out_ctx))
    cons.close()
    if len(shipments) < a.count:
        fail(f"read {len(shipments)} of {a.count} shipments in 60 s")
    print(json.dumps({"shipments": shipments, "ids": sorted(ids)}), flush=True)


if __name__ == "__main__":
    main()
