"""Produces one record per case with kafka-python (which surfaces Produce v8+ record
errors, KIP-467) and prints one JSON line per case: {"case", "ok"} or {"case", "error"}.

Cases are NAME=HEX (the value's bytes); schema validation is the broker's to do.
"""

import json
import sys

from kafka import KafkaProducer

from common import parser


def main():
    p = parser(__doc__)
    p.add_argument("cases", nargs="+")
    args = p.parse_args()
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, retries=0, acks=1, linger_ms=0)
    for case in args.cases:
        name, hexed = case.split("=", 1)
        try:
            producer.send(args.topic, value=bytes.fromhex(hexed)).get(timeout=20)
            print(json.dumps({"case": name, "ok": True}), flush=True)
        except Exception as e:  # the error the client shows its user
            print(json.dumps({"case": name, "error": f"{type(e).__name__}: {e}"}), flush=True)
    producer.close()


if __name__ == "__main__":
    sys.exit(main())
