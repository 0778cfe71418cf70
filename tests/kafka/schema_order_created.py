"""The evolution of examples/order-created with confluent-kafka's AvroSerializer, unchanged:
the producer writes orders with v1 (auto-registered), moves to v2 (a renamed field through
an alias, a new field with a default; auto-registered, BACKWARD compatible), and v3 is
refused with 409. The Rust test then checks that the v1 handler read every order."""

import json
import os

from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from common import fail, parser


def main():
    p = parser(__doc__)
    p.add_argument("--registry", required=True)
    p.add_argument("--schemas", required=True, help="examples/order-created/schemas")
    p.add_argument("--count", type=int, default=50)
    a = p.parse_args()
    read = lambda v: open(os.path.join(a.schemas, f"order_{v}.avsc")).read()
    sr = SchemaRegistryClient({"url": a.registry})
    prod = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5})
    errors = []
    ctx = SerializationContext(a.topic, MessageField.VALUE)
    v1 = AvroSerializer(sr, read("v1"))
    v2 = AvroSerializer(sr, read("v2"))
    for i in range(a.count):
        if i < a.count // 2:
            value = v1({"order_id": f"o-{i}", "customer": f"c-{i}", "total_cents": i}, ctx)
        else:
            value = v2({"order_id": f"o-{i}", "customer_name": f"c-{i}", "total_cents": i, "currency": "USD"}, ctx)
        prod.produce(a.topic, key=f"o-{i}".encode(), value=value, on_delivery=lambda e, _m: e and errors.append(e))
        prod.poll(0)
    if prod.flush(30) != 0 or errors:
        fail(f"delivery failed: {errors[:3]}")
    subject = f"{a.topic}-value"
    if sr.get_versions(subject) != [1, 2]:
        fail(f"versions of {subject}: {sr.get_versions(subject)}")
    try:
        sr.register_schema(subject, Schema(read("v3"), "AVRO"))
        fail("v3 was registered")
    except SchemaRegistryError as e:
        if e.error_code != 409:
            fail(f"v3: error {e.error_code} {e.error_message}, expected 409")
    print(json.dumps({"produced": a.count}), flush=True)


if __name__ == "__main__":
    main()
