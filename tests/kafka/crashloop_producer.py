"""The crash loop's Kafka producer (tests/crashloop/main.rs drives it): confluent-kafka
(librdkafka) producing keyed order records with acks=all to a host that is SIGKILLed and
restarted on the same port under it. One process lives through every kill, as a real
application's producer would: librdkafka reconnects by itself.

Commands on stdin, one per line:
  resume   produce orders (ids from --first-id, one after another) without pause
  pause    stop producing, wait until every record produced so far has a delivery report
           (the host is restarted meanwhile), then print `paused`
  stop     as pause, then exit

Lines on stdout, tab-separated (keys and values are ASCII without tabs):
  ready    <partitions>                  metadata fetched, waiting for `resume`
  ack      <partition> <offset> <key> <value>   a delivery report without error
  err      <error name> <key> <value>           a delivery report with an error
  paused   <next id> <reports still missing>    every id below <next id> was produced

Retries are off (`retries=0`) and idempotence is off, so librdkafka sends each record at
most once: a record whose request was cut by a kill gets an error report and may or may not
be in the log, and nothing can be appended twice. With retries on, a request whose append
succeeded but whose response was lost to the kill would be sent again after the restart and
appended a second time, which is correct at-least-once behaviour for a non-idempotent
producer but would leave the checker unable to tell a retry from a host bug.
"""

import queue
import sys
import threading

from confluent_kafka import Producer

from common import parser

# At most this many records without a delivery report: bounds what one kill can cut and
# what `pause` has to wait for after a restart.
MAX_OUTSTANDING = 2000


def order_value(i):
    # Byte for byte what order_value() in tests/crashloop/main.rs builds.
    return f'{{"type":"order_created","order_id":{i},"email":"c{i}@example.com","total_cents":{i * 7 % 10000},"amount_cents":{i * 7 % 10000}}}'


def order_key(i):
    return f"customer-{i % 23}"


def main():
    p = parser(__doc__)
    p.add_argument("--first-id", type=int, required=True)
    p.add_argument("--codec", default="none")
    a = p.parse_args()
    out = sys.stdout

    prod = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "retries": 0,
        "linger.ms": 5,
        "compression.type": a.codec,
        "partitioner": "murmur2_random",
        # The host is back within a second or so of each kill: reconnect promptly instead of
        # backing off to librdkafka's 10 s maximum.
        "reconnect.backoff.ms": 10,
        "reconnect.backoff.max.ms": 200,
        # A record still undelivered after this fails with _MSG_TIMED_OUT, which the checker
        # reports as a failure: the host was down or stuck far longer than a restart takes.
        "message.timeout.ms": 120000,
    })
    outstanding = [0]

    def on_delivery(err, msg):
        outstanding[0] -= 1
        key, value = msg.key().decode(), msg.value().decode()
        if err is None:
            out.write(f"ack\t{msg.partition()}\t{msg.offset()}\t{key}\t{value}\n")
        else:
            out.write(f"err\t{err.name()}\t{key}\t{value}\n")

    md = prod.list_topics(a.topic, timeout=30)
    t = md.topics[a.topic]
    if t.error is not None:
        print(f"FAIL: metadata for {a.topic}: {t.error}", file=sys.stderr, flush=True)
        sys.exit(1)
    out.write(f"ready\t{len(t.partitions)}\n")
    out.flush()

    commands = queue.Queue()

    def read_commands():
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("stop")

    threading.Thread(target=read_commands, daemon=True).start()

    running = False
    next_id = a.first_id
    while True:
        try:
            cmd = commands.get_nowait() if running else commands.get()
        except queue.Empty:
            cmd = None
        if cmd == "resume":
            running = True
        elif cmd in ("pause", "stop"):
            running = False
            missing = prod.flush(150)
            out.write(f"paused\t{next_id}\t{missing}\n")
            out.flush()
            if cmd == "stop":
                return
        elif cmd is not None:
            print(f"FAIL: unknown command {cmd!r}", file=sys.stderr, flush=True)
            sys.exit(1)
        if not running:
            continue
        if outstanding[0] >= MAX_OUTSTANDING:
            prod.poll(0.005)
            continue
        try:
            prod.produce(a.topic, key=order_key(next_id).encode(), value=order_value(next_id).encode(),
                         on_delivery=on_delivery)
        except BufferError:
            prod.poll(0.005)
            continue
        outstanding[0] += 1
        next_id += 1
        prod.poll(0)


if __name__ == "__main__":
    main()
