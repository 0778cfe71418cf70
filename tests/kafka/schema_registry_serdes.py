"""confluent-kafka's schema registry client and serializers, unchanged, pointed at Rill's
registry and Kafka door: Avro, JSON Schema and Protobuf records produced with
AvroSerializer/JSONSerializer/ProtobufSerializer (auto-registering their schemas), consumed
back with the matching deserializers, plus the registry calls tools make (subjects,
versions, compatibility, config) and the errors Confluent's clients expect (409, 42201).

Prints one JSON line with the ids it saw, for the Rust test to check against the registry.
"""

import json

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from common import fail, parser

ORDER_V1 = json.dumps({
    "type": "record", "name": "OrderCreated", "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "customer", "type": "string"},
        {"name": "total_cents", "type": "long"},
    ],
})
# v2: a field with a default (v2 readers read v1 data): BACKWARD compatible.
ORDER_V2 = json.dumps({
    "type": "record", "name": "OrderCreated", "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "customer", "type": "string"},
        {"name": "total_cents", "type": "long"},
        {"name": "currency", "type": "string", "default": "EUR"},
    ],
})
# v3: a new field without a default: v3 readers cannot read v2 data.
ORDER_V3 = json.dumps({
    "type": "record", "name": "OrderCreated", "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "total_cents", "type": "long"},
        {"name": "region", "type": "string"},
    ],
})
ORDER_JSON = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "OrderCreated", "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "total_cents": {"type": "integer", "minimum": 0},
    },
    "required": ["order_id", "total_cents"],
})


def order_message_class():
    """A Protobuf message class built at run time (no protoc here): shop.Order."""
    fdp = descriptor_pb2.FileDescriptorProto(name="shop/order.proto", package="shop", syntax="proto3")
    m = fdp.message_type.add(name="Order")
    f = descriptor_pb2.FieldDescriptorProto
    m.field.add(name="order_id", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    m.field.add(name="total_cents", number=2, type=f.TYPE_INT64, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def create(bootstrap, topics):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in topics]).items():
        f.result(timeout=10)


def produce(bootstrap, topic, serialize, values):
    errors = []
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, v in enumerate(values):
        ctx = SerializationContext(topic, MessageField.VALUE)
        prod.produce(topic, key=f"k{i}".encode(), value=serialize(v, ctx),
                     on_delivery=lambda err, _m: err and errors.append(err))
        prod.poll(0)
    if prod.flush(30) != 0 or errors:
        fail(f"{topic}: delivery failed: {errors[:3]}")


def consume(bootstrap, topic, count):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sr-{topic}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    raw = []
    while len(raw) < count:
        m = c.poll(10)
        if m is None:
            fail(f"{topic}: only {len(raw)} of {count} records came back")
        if m.error():
            fail(f"{topic}: {m.error()}")
        raw.append(m.value())
    c.close()
    return raw


def schema_id(raw):
    if raw[0] != 0:
        fail(f"magic byte {raw[0]}, expected 0")
    return int.from_bytes(raw[1:5], "big")


def expect_error(code, what, call):
    try:
        call()
    except SchemaRegistryError as e:
        if e.error_code != code:
            fail(f"{what}: error code {e.error_code} ({e.error_message}), expected {code}")
        return e.error_message
    fail(f"{what}: accepted, expected error {code}")


def main():
    p = parser(__doc__)
    p.add_argument("--registry", required=True)
    a = p.parse_args()
    sr = SchemaRegistryClient({"url": a.registry})
    t = a.topic
    create(a.bootstrap, [f"{t}-avro", f"{t}-json", f"{t}-proto"])
    out = {}

    # Avro: v1 auto-registered by the serializer, records round-trip through the door.
    orders = [{"order_id": f"o-{i}", "customer": f"c-{i % 7}", "total_cents": 100 * i + 1} for i in range(40)]
    ser = AvroSerializer(sr, ORDER_V1)
    produce(a.bootstrap, f"{t}-avro", ser, orders)
    raw = consume(a.bootstrap, f"{t}-avro", len(orders))
    de = AvroDeserializer(sr)
    back = [de(r, SerializationContext(f"{t}-avro", MessageField.VALUE)) for r in raw]
    if back != orders:
        fail(f"Avro records changed on the way: {back[:2]} vs {orders[:2]}")
    out["avro_v1_id"] = schema_id(raw[0])

    # The producer moves to v2; a reader with v2 reads the v1 records (currency defaults).
    subject = f"{t}-avro-value"
    v2 = sr.register_schema(subject, Schema(ORDER_V2, "AVRO"))
    out["avro_v2_id"] = v2
    de_v2 = AvroDeserializer(sr, ORDER_V2)
    old = de_v2(raw[0], SerializationContext(f"{t}-avro", MessageField.VALUE))
    if old.get("currency") != "EUR" or old["order_id"] != "o-0":
        fail(f"v2 reader on a v1 record gave {old}")
    latest = sr.get_latest_version(subject)
    if latest.version != 2 or latest.schema_id != v2:
        fail(f"latest is version {latest.version} id {latest.schema_id}, expected 2 / {v2}")
    if sr.get_versions(subject) != [1, 2]:
        fail(f"versions {sr.get_versions(subject)}")
    if subject not in sr.get_subjects():
        fail(f"{subject} missing from {sr.get_subjects()}")
    # Registering v1 again finds it: same id, no new version.
    if sr.register_schema(subject, Schema(ORDER_V1, "AVRO")) != out["avro_v1_id"]:
        fail("v1 registered twice got a new id")
    found = sr.lookup_schema(subject, Schema(ORDER_V2, "AVRO"))
    if found.version != 2:
        fail(f"lookup of v2 gave version {found.version}")
    if not sr.test_compatibility(subject, Schema(ORDER_V2, "AVRO")):
        fail("v2 tested incompatible with itself")
    if sr.test_compatibility(subject, Schema(ORDER_V3, "AVRO")):
        fail("v3 tested compatible")
    out["v3_refused"] = expect_error(409, "registering v3", lambda: sr.register_schema(subject, Schema(ORDER_V3, "AVRO")))
    expect_error(42201, "an invalid schema", lambda: sr.register_schema(subject, Schema('{"type": "recrod"}', "AVRO")))
    # With NONE on the subject, v3 goes in; the global level stays BACKWARD.
    sr.set_compatibility(subject, "NONE")
    if sr.get_compatibility(subject) != "NONE" or sr.get_compatibility() != "BACKWARD":
        fail(f"levels: subject {sr.get_compatibility(subject)}, global {sr.get_compatibility()}")
    out["avro_v3_id"] = sr.register_schema(subject, Schema(ORDER_V3, "AVRO"))

    # JSON Schema.
    jser = JSONSerializer(ORDER_JSON, sr)
    jorders = [{"order_id": f"j-{i}", "total_cents": i} for i in range(20)]
    produce(a.bootstrap, f"{t}-json", jser, jorders)
    jraw = consume(a.bootstrap, f"{t}-json", len(jorders))
    jde = JSONDeserializer(ORDER_JSON)
    jback = [jde(r, SerializationContext(f"{t}-json", MessageField.VALUE)) for r in jraw]
    if jback != jorders:
        fail(f"JSON records changed: {jback[:2]}")
    out["json_id"] = schema_id(jraw[0])

    # Protobuf.
    order = order_message_class()
    pser = ProtobufSerializer(order, sr, {"use.deprecated.format": False})
    porders = [order(order_id=f"p-{i}", total_cents=7 * i) for i in range(20)]
    produce(a.bootstrap, f"{t}-proto", pser, porders)
    praw = consume(a.bootstrap, f"{t}-proto", len(porders))
    pde = ProtobufDeserializer(order, {"use.deprecated.format": False})
    pback = [pde(r, SerializationContext(f"{t}-proto", MessageField.VALUE)) for r in praw]
    if pback != porders:
        fail(f"Protobuf records changed: {pback[:2]}")
    out["proto_id"] = schema_id(praw[0])
    if sr.get_schema(out["proto_id"]).schema_type != "PROTOBUF":
        fail("the Protobuf schema is not reported as PROTOBUF")

    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
