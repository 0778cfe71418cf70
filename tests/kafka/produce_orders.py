"""Produces order events (the JSON the example notifier handler reads) with
confluent-kafka, compressed with --codec, keyed by customer."""

import json

from confluent_kafka import Producer

from common import fail, parser


def main():
    p = parser(__doc__)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--codec", default="lz4")
    a = p.parse_args()
    prod = Producer({"bootstrap.servers": a.bootstrap, "compression.type": a.codec, "linger.ms": 20})
    errors = []
    for i in range(a.count):
        v = {"event": "order_created", "order_id": i, "email": f"c{i}@example.com", "total_cents": i * 100}
        prod.produce(a.topic, key=f"k{i % 13}".encode(), value=json.dumps(v, separators=(",", ":")).encode(),
                     on_delivery=lambda err, _m: err and errors.append(err))
    if prod.flush(30) != 0 or errors:
        fail(f"produce failed: {errors[:3]}")
    print(f"ok: produced {a.count} orders with {a.codec}")


if __name__ == "__main__":
    main()
