"""Issue 11: a confluent-kafka producer with transactional.id must fail at once, with a clear
message, against a broker without transactions (Rill answers FindCoordinator for
transactions, and InitProducerId with a transactional id, with the non-retriable
TRANSACTIONAL_ID_AUTHORIZATION_FAILED instead of a retriable error clients retried forever).
Prints the error and how long it took."""

import argparse
import time

from confluent_kafka import KafkaException, Producer

from common import fail


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True)
    a = p.parse_args()
    producer = Producer({"bootstrap.servers": a.bootstrap, "transactional.id": "issue11-txn"})
    start = time.monotonic()
    try:
        # The timeout is a ceiling only: the point is that it is not reached.
        producer.init_transactions(30)
    except KafkaException as e:
        took = time.monotonic() - start
        err = e.args[0]
        print(f"init_transactions failed after {took:.1f}s: {err.name()}: {err.str()}")
        if took > 10:
            fail(f"took {took:.1f}s to fail")
        if err.retriable():
            fail("the error is retriable")
        if "TRANSACTIONAL_ID_AUTHORIZATION_FAILED" not in err.name():
            fail(f"unexpected error {err.name()}")
        return
    fail("init_transactions succeeded against a broker without transactions")


if __name__ == "__main__":
    main()
