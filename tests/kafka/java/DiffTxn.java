// DiffTxn: the transactions scenarios of the Java kafka-clients side of Rill's differential
// suite (tests/all/transactions.rs), run through DiffClient:
//
//   java -cp target/diff-java:<kafka classpath> DiffClient txn-<scenario> --bootstrap B --topic T --group G
//
// Transactional ids are named after the run's group (unique per run). Records go to explicit
// partitions and every transaction is flushed before it ends, so the offsets of records and
// of transaction markers are the same in every run and are compared exactly.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;

final class DiffTxn {
    private DiffTxn() {}

    /** How long a read_committed consumer is given to (not) see records past an open transaction. */
    static final long BLOCKED_WAIT_MS = 2_000;
    /** How long a reader keeps polling after it has what it expects, to catch extra records. */
    static final long TAIL_WAIT_MS = 500;

    static Object run(String scenario) throws Exception {
        switch (scenario) {
            case "txn-commit-abort": return commitAbort();
            case "txn-offsets": return offsetsInTxn();
            case "txn-fencing": return fencing();
            case "txn-lso": return lso();
            default: DiffClient.die("unknown scenario " + scenario); return null;
        }
    }

    // ---- clients and helpers ----

    static KafkaProducer<byte[], byte[]> txnProducer(String suffix) {
        return DiffClient.producer("transactional.id", DiffClient.group + "-" + suffix,
                "transaction.timeout.ms", "10000", "linger.ms", "5");
    }

    /** A record to send: its partition and value. */
    record Out(int partition, String value) {}

    /**
     * Sends the records in order, flushes, and returns each one's [partition, offset], or
     * its error, in send order.
     */
    static List<Object> send(KafkaProducer<byte[], byte[]> p, String t, List<Out> records) {
        // Per record: its Future, or the error send() threw at once.
        List<Object> sent = new ArrayList<>();
        for (Out o : records) {
            try {
                sent.add(p.send(new ProducerRecord<>(t, o.partition(), null, DiffClient.bytes(o.value()))));
            } catch (Exception e) {
                sent.add(fenced(e));
            }
        }
        try {
            p.flush();
        } catch (Exception e) {
            DiffClient.log("flush: " + e);
        }
        List<Object> reports = new ArrayList<>();
        for (Object s : sent) {
            if (!(s instanceof Future<?> f)) {
                reports.add(s);
                continue;
            }
            try {
                RecordMetadata m = (RecordMetadata) f.get();
                reports.add(List.of(m.partition(), m.offset()));
            } catch (Exception e) {
                reports.add(fenced(e));
            }
        }
        return reports;
    }

    /**
     * DiffClient.err plus a category: "fenced" for every name of "another producer with this
     * transactional id took over" (ProducerFencedException, InvalidProducerEpochException,
     * PRODUCER_FENCED, INVALID_PRODUCER_EPOCH), else the error's name.
     */
    static Map<String, Object> fenced(Throwable e) {
        Map<String, Object> m = DiffClient.err(e);
        if (e == null) return m;
        Throwable c = DiffClient.cause(e);
        String name = (String) m.get("error");
        boolean isFenced = c instanceof ProducerFencedException || c instanceof InvalidProducerEpochException
                || "PRODUCER_FENCED".equals(name) || "INVALID_PRODUCER_EPOCH".equals(name);
        m.put("category", isFenced ? "fenced" : name);
        return m;
    }

    /** Runs an action that may fail: null, or its error (see fenced). */
    static Object attempt(ThrowingRunnable r) {
        try {
            r.run();
            return null;
        } catch (Exception e) {
            return fenced(e);
        }
    }

    interface ThrowingRunnable {
        void run() throws Exception;
    }

    static KafkaConsumer<byte[], byte[]> reader(String isolation) {
        return DiffClient.consumer("isolation.level", isolation, "fetch.max.wait.ms", "100");
    }

    static List<TopicPartition> partitions(String t, int n) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < n; i++) tps.add(new TopicPartition(t, i));
        return tps;
    }

    /**
     * Polls until want records came (or timeoutMs passed), then TAIL_WAIT_MS more for any
     * extra; returns {"records": {partition: [[offset, value]]}} in arrival order.
     */
    static Map<String, Object> pollRecords(KafkaConsumer<byte[], byte[]> c, int want, long timeoutMs) {
        Map<String, Object> got = new TreeMap<>();
        int n = 0;
        long deadline = System.currentTimeMillis() + timeoutMs;
        Long tailEnd = null;
        while (true) {
            long now = System.currentTimeMillis();
            if (tailEnd == null && (n >= want || now >= deadline)) tailEnd = now + TAIL_WAIT_MS;
            if (tailEnd != null && now >= tailEnd) break;
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                @SuppressWarnings("unchecked")
                List<Object> l = (List<Object>) got.computeIfAbsent(Integer.toString(r.partition()), k -> new ArrayList<>());
                l.add(List.of(r.offset(), DiffClient.str(r.value())));
                n++;
            }
        }
        return Map.of("records", got);
    }

    /** Every record of t a consumer with this isolation level sees from the start. */
    static Map<String, Object> readFromStart(String t, int parts, String isolation, int want) {
        try (KafkaConsumer<byte[], byte[]> c = reader(isolation)) {
            List<TopicPartition> tps = partitions(t, parts);
            c.assign(tps);
            c.seekToBeginning(tps);
            return pollRecords(c, want, 20_000);
        }
    }

    /**
     * The end offsets of every partition of t: the AdminClient's ListOffsets latest with each
     * isolation level ("read_committed", "read_uncommitted"), and the consumer's endOffsets
     * with each isolation.level ("consumer_read_committed", ...).
     */
    static Map<String, Object> endOffsets(String t, int parts) throws Exception {
        Map<String, Object> out = new TreeMap<>();
        for (IsolationLevel level : IsolationLevel.values()) {
            Map<TopicPartition, OffsetSpec> spec = new HashMap<>();
            for (TopicPartition tp : partitions(t, parts)) spec.put(tp, OffsetSpec.latest());
            Map<String, Object> m = new TreeMap<>();
            try {
                var r = DiffClient.adm().listOffsets(spec, new ListOffsetsOptions(level)).all().get();
                for (var e : r.entrySet()) m.put(Integer.toString(e.getKey().partition()), e.getValue().offset());
            } catch (Exception e) {
                m = DiffClient.err(e);
            }
            out.put(level.toString().toLowerCase(Locale.ROOT), m);
            try (KafkaConsumer<byte[], byte[]> c = reader(level.toString().toLowerCase(Locale.ROOT))) {
                Map<String, Object> ends = new TreeMap<>();
                for (var e : c.endOffsets(partitions(t, parts)).entrySet()) {
                    ends.put(Integer.toString(e.getKey().partition()), e.getValue());
                }
                out.put("consumer_" + level.toString().toLowerCase(Locale.ROOT), ends);
            }
        }
        return out;
    }

    // ---- txn-commit-abort ----

    /** Transactions A (committed), B (aborted) and C (committed) over 2 partitions. */
    static Object commitAbort() throws Exception {
        String t = DiffClient.topic;
        DiffClient.createTopic(t, 2, null);
        Map<String, Object> delivered = new TreeMap<>(), ended = new TreeMap<>();
        try (KafkaProducer<byte[], byte[]> p = txnProducer("txn")) {
            p.initTransactions();
            Map<String, List<Out>> txns = new LinkedHashMap<>();
            txns.put("a", List.of(new Out(0, "a1"), new Out(1, "a2"), new Out(0, "a3")));
            txns.put("b", List.of(new Out(0, "b1"), new Out(1, "b2"), new Out(0, "b3")));
            txns.put("c", List.of(new Out(0, "c1"), new Out(1, "c2")));
            for (var e : txns.entrySet()) {
                p.beginTransaction();
                delivered.put(e.getKey(), send(p, t, e.getValue()));
                boolean commit = !e.getKey().equals("b");
                ended.put(e.getKey(), attempt(commit ? p::commitTransaction : p::abortTransaction));
            }
        }
        Map<String, Object> out = new TreeMap<>();
        out.put("delivered", delivered);
        out.put("ended", ended);
        out.put("read_committed", readFromStart(t, 2, "read_committed", 5));
        out.put("read_uncommitted", readFromStart(t, 2, "read_uncommitted", 8));
        out.put("end_offsets", endOffsets(t, 2));
        return out;
    }

    // ---- txn-offsets ----

    /**
     * The next n records c polls (partition 0 of one topic), as [offset, value]; a poll that
     * returned more is rewound to the first record not taken.
     */
    static List<List<Object>> take(KafkaConsumer<byte[], byte[]> c, TopicPartition tp, int n) {
        List<List<Object>> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 30_000;
        while (got.size() < n && System.currentTimeMillis() < deadline) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                if (got.size() == n) {
                    c.seek(tp, r.offset());
                    break;
                }
                got.add(List.of(r.offset(), DiffClient.str(r.value())));
            }
        }
        return got;
    }

    /**
     * Consume-transform-produce: round 1 commits its output and its input offsets together,
     * round 2 aborts both.
     */
    static Object offsetsInTxn() throws Exception {
        String in = DiffClient.topic + "-in", outTopic = DiffClient.topic + "-out";
        DiffClient.createTopic(in, 1, null);
        DiffClient.createTopic(outTopic, 1, null);
        List<Out> inputs = new ArrayList<>();
        for (int i = 0; i < 6; i++) inputs.add(new Out(0, "i" + i));
        try (KafkaProducer<byte[], byte[]> plain = DiffClient.producer("linger.ms", "5")) {
            send(plain, in, inputs);
        }
        TopicPartition tp = new TopicPartition(in, 0);
        Map<String, Object> out = new TreeMap<>();
        try (KafkaConsumer<byte[], byte[]> c = DiffClient.consumer("group.id", DiffClient.group,
                     "isolation.level", "read_committed", "max.poll.records", "3",
                     "session.timeout.ms", "6000", "heartbeat.interval.ms", "500");
             KafkaProducer<byte[], byte[]> p = txnProducer("ctp")) {
            c.subscribe(List.of(in));
            p.initTransactions();
            for (String round : List.of("round1", "round2")) {
                boolean commit = round.equals("round1");
                List<List<Object>> got = take(c, tp, 3);
                List<Out> outs = new ArrayList<>();
                List<Object> consumed = new ArrayList<>();
                for (List<Object> r : got) {
                    outs.add(new Out(0, "out-" + r.get(1)));
                    consumed.add(r.get(0));
                }
                p.beginTransaction();
                Map<String, Object> m = new TreeMap<>();
                m.put("end", commit ? "commit" : "abort");
                m.put("consumed", consumed);
                m.put("delivered", send(p, outTopic, outs));
                long next = (Long) got.get(got.size() - 1).get(0) + 1;
                m.put("send_offsets", attempt(() -> p.sendOffsetsToTransaction(
                        Map.of(tp, new OffsetAndMetadata(next)), c.groupMetadata())));
                m.put("ended", attempt(commit ? p::commitTransaction : p::abortTransaction));
                OffsetAndMetadata committed = c.committed(Set.of(tp)).get(tp);
                m.put("committed_after", committed == null ? null : committed.offset());
                out.put(round, m);
            }
        }
        out.put("output_read_committed", readFromStart(outTopic, 1, "read_committed", 3));
        out.put("output_read_uncommitted", readFromStart(outTopic, 1, "read_uncommitted", 6));
        out.put("output_end_offsets", endOffsets(outTopic, 1));
        return out;
    }

    // ---- txn-fencing ----

    /**
     * P2 initialises the transactional id P1 has a transaction open under: P1 is fenced and
     * its transaction aborted; P2's own transaction commits.
     */
    static Object fencing() throws Exception {
        String t = DiffClient.topic;
        DiffClient.createTopic(t, 1, null);
        Map<String, Object> out = new TreeMap<>();
        KafkaProducer<byte[], byte[]> p1 = txnProducer("zombie");
        p1.initTransactions();
        p1.beginTransaction();
        out.put("p1_before", send(p1, t, List.of(new Out(0, "p1-a"))));
        try (KafkaProducer<byte[], byte[]> p2 = txnProducer("zombie")) {
            out.put("p2_init", attempt(p2::initTransactions));
            out.put("p1_send", send(p1, t, List.of(new Out(0, "p1-b"))));
            out.put("p1_commit", attempt(p1::commitTransaction));
            p1.close(Duration.ZERO);
            p2.beginTransaction();
            out.put("p2_delivered", send(p2, t, List.of(new Out(0, "p2-a"))));
            out.put("p2_commit", attempt(p2::commitTransaction));
        }
        out.put("read_committed", readFromStart(t, 1, "read_committed", 1));
        out.put("read_uncommitted", readFromStart(t, 1, "read_uncommitted", 2));
        out.put("end_offsets", endOffsets(t, 1));
        return out;
    }

    // ---- txn-lso ----

    /**
     * An open transaction holds read_committed readers back at its first record (the last
     * stable offset), also from records written after it outside any transaction.
     */
    static Object lso() throws Exception {
        String t = DiffClient.topic;
        DiffClient.createTopic(t, 1, null);
        TopicPartition tp = new TopicPartition(t, 0);
        Map<String, Object> out = new TreeMap<>();
        try (KafkaProducer<byte[], byte[]> plain = DiffClient.producer("linger.ms", "5");
             KafkaProducer<byte[], byte[]> p = txnProducer("open");
             KafkaConsumer<byte[], byte[]> c = reader("read_committed")) {
            out.put("before", send(plain, t, List.of(new Out(0, "n0"), new Out(0, "n1"))));
            p.initTransactions();
            p.beginTransaction();
            out.put("open_txn", send(p, t, List.of(new Out(0, "t0"), new Out(0, "t1"))));
            out.put("after_open", send(plain, t, List.of(new Out(0, "n2"))));
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            Map<String, Object> open = new TreeMap<>();
            open.put("read_committed", pollRecords(c, 3, BLOCKED_WAIT_MS));
            open.put("read_committed_position", c.position(tp));
            open.put("read_uncommitted", readFromStart(t, 1, "read_uncommitted", 5));
            open.put("end_offsets", endOffsets(t, 1));
            out.put("while_open", open);
            out.put("commit", attempt(p::commitTransaction));
            Map<String, Object> after = new TreeMap<>();
            after.put("same_read_committed_consumer", pollRecords(c, 3, 20_000));
            after.put("end_offsets", endOffsets(t, 1));
            out.put("after_commit", after);
        }
        return out;
    }
}
