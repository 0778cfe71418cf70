// DiffClient: the Java kafka-clients side of Rill's differential suite
// (tests/all/diff_java_go.rs).
//
//   java -cp target/diff-java:<kafka classpath> DiffClient <scenario> --bootstrap B --topic T --group G
//
// Runs one scenario against one broker with the Apache Kafka 4.1.1 Producer, Consumer and
// AdminClient, and prints one JSON observation as the last line of stdout (diagnostics go to
// stderr). An observation holds only what should not depend on which broker served it: no
// topic names, node ids, ports, cluster ids or wall-clock times. Errors are reported by their
// exception class and Kafka's error name (Errors.forException).

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class DiffClient {
    static String bootstrap, topic, group;

    public static void main(String[] args) throws Exception {
        if (args.length < 1) die("usage: DiffClient <scenario> --bootstrap B --topic T --group G");
        String scenario = args[0];
        for (int i = 1; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--bootstrap": bootstrap = args[i + 1]; break;
                case "--topic": topic = args[i + 1]; break;
                case "--group": group = args[i + 1]; break;
                default: die("unknown option " + args[i]);
            }
        }
        Object out;
        switch (scenario) {
            case "produce-consume": out = produceConsume(); break;
            case "codecs": out = codecs(); break;
            case "group-split-takeover": out = groupSplitTakeover(); break;
            case "group-restart-resume": out = groupRestartResume(); break;
            case "offsets-by-time": out = offsetsByTime(); break;
            case "out-of-range": out = outOfRange(); break;
            case "admin": out = admin(); break;
            case "errors": out = errors(); break;
            default:
                // Transactions: txn-commit-abort, txn-offsets, txn-fencing, txn-lso.
                if (scenario.startsWith("txn-")) {
                    out = DiffTxn.run(scenario);
                    break;
                }
                die("unknown scenario " + scenario);
                return;
        }
        System.out.flush();
        System.out.println(json(out));
        System.out.flush();
        // Client threads (the admin client's, a producer's) must not keep the JVM alive.
        System.exit(0);
    }

    static void die(String msg) {
        System.err.println("DiffClient: " + msg);
        System.exit(1);
    }

    static void log(String msg) {
        System.err.println("DiffClient: " + msg);
    }

    // ---- clients ----

    static Properties base() {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", "rill-diff-java");
        return p;
    }

    static KafkaProducer<byte[], byte[]> producer(Object... kv) {
        Properties p = base();
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        for (int i = 0; i < kv.length; i += 2) p.put(kv[i], kv[i + 1]);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<byte[], byte[]> consumer(Object... kv) {
        Properties p = base();
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        for (int i = 0; i < kv.length; i += 2) p.put(kv[i], kv[i + 1]);
        return new KafkaConsumer<>(p);
    }

    static Admin admin;

    static Admin adm() {
        if (admin == null) admin = Admin.create(base());
        return admin;
    }

    static void createTopic(String name, int partitions, Map<String, String> configs) throws Exception {
        NewTopic t = new NewTopic(name, partitions, (short) 1);
        if (configs != null) t.configs(configs);
        adm().createTopics(List.of(t)).all().get();
        waitForTopic(name, partitions);
    }

    // Kafka creates topics asynchronously: wait until metadata names every partition.
    static void waitForTopic(String name, int partitions) throws Exception {
        for (int i = 0; i < 100; i++) {
            try {
                TopicDescription d = adm().describeTopics(List.of(name)).allTopicNames().get().get(name);
                if (d.partitions().size() == partitions && d.partitions().stream().allMatch(p -> p.leader() != null)) return;
            } catch (ExecutionException e) {
                // not yet
            }
            Thread.sleep(100);
        }
        die("topic " + name + " never appeared in metadata");
    }

    // ---- errors ----

    static Throwable cause(Throwable e) {
        while ((e instanceof ExecutionException || e instanceof KafkaException && !(e instanceof org.apache.kafka.common.errors.ApiException)) && e.getCause() != null) {
            e = e.getCause();
        }
        return e;
    }

    static Map<String, Object> err(Throwable e) {
        Map<String, Object> m = new TreeMap<>();
        if (e == null) {
            m.put("error", null);
            return m;
        }
        e = cause(e);
        m.put("class", e.getClass().getSimpleName());
        m.put("error", Errors.forException(e).name());
        return m;
    }

    // ---- observations ----

    static String sha(byte[] b) throws Exception {
        if (b == null) return null;
        byte[] d = MessageDigest.getInstance("SHA-256").digest(b);
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < 8; i++) s.append(String.format("%02x", d[i]));
        return s.toString();
    }

    static String str(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static Map<String, Object> recordObs(ConsumerRecord<byte[], byte[]> r) throws Exception {
        Map<String, Object> m = new TreeMap<>();
        List<Object> hs = new ArrayList<>();
        for (Header h : r.headers()) hs.add(Arrays.asList(h.key(), str(h.value())));
        m.put("offset", r.offset());
        m.put("key", str(r.key()));
        m.put("value", sha(r.value()));
        m.put("len", r.value() == null ? 0 : r.value().length);
        m.put("headers", hs);
        return m;
    }

    // Reads every partition of t from the start (no group) until n records came.
    static List<ConsumerRecord<byte[], byte[]>> consumeAll(String t, int n) throws Exception {
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo p : c.partitionsFor(t)) tps.add(new TopicPartition(t, p.partition()));
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 30_000;
            while (got.size() < n) {
                if (System.currentTimeMillis() > deadline) die("consumed " + got.size() + " of " + n + " of " + t);
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) got.add(r);
            }
        }
        return got;
    }

    // ---- produce-consume ----

    static Object produceConsume() throws Exception {
        createTopic(topic, 4, null);
        List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, bytes("key-" + i), bytes("value " + i + " é ✓"));
            r.headers().add("i", bytes(Integer.toString(i))).add("dup", bytes("a")).add("dup", null);
            recs.add(r);
        }
        recs.add(new ProducerRecord<>(topic, bytes("null-value"), null));
        byte[] big = new byte[1_000_000];
        for (int i = 0; i < big.length; i++) big[i] = (byte) (i * 7);
        recs.add(new ProducerRecord<>(topic, bytes("big"), big));
        recs.add(new ProducerRecord<>(topic, null, bytes("no key")));
        // Defaults: idempotent (enable.idempotence=true, acks=all) and the built-in
        // partitioner (murmur2 of the key for keyed records, sticky for unkeyed ones).
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
            for (ProducerRecord<byte[], byte[]> r : recs) fs.add(p.send(r));
            for (var f : fs) f.get();
        }
        Map<String, Object> parts = new TreeMap<>();
        List<Object> unkeyed = new ArrayList<>();
        Map<String, Object> landed = new TreeMap<>();
        for (ConsumerRecord<byte[], byte[]> r : consumeAll(topic, recs.size())) {
            if (r.key() == null) {
                Map<String, Object> u = new TreeMap<>();
                u.put("value", sha(r.value()));
                u.put("offset_is_known", r.offset() >= 0);
                unkeyed.add(u);
                continue;
            }
            @SuppressWarnings("unchecked")
            List<Object> l = (List<Object>) parts.computeIfAbsent(Integer.toString(r.partition()), k -> new ArrayList<>());
            l.add(recordObs(r));
            landed.put(str(r.key()), r.partition());
        }
        Map<String, Object> out = new TreeMap<>();
        out.put("partitioner", "Java default: BuiltInPartitioner, keys by murmur2, unkeyed sticky");
        out.put("idempotent", "Java default (on)");
        out.put("partitions", parts);
        out.put("unkeyed", unkeyed);
        out.put("key_partition", landed);
        return out;
    }

    // ---- codecs ----

    static Object codecs() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            String t = topic + "-" + codec;
            createTopic(t, 1, null);
            try (KafkaProducer<byte[], byte[]> p = producer("compression.type", codec, "linger.ms", "50")) {
                for (int i = 0; i < 200; i++) {
                    p.send(new ProducerRecord<>(t, bytes("k" + (i % 7)), bytes((codec + " " + i + " ").repeat(20))));
                }
                p.flush();
            }
            List<ConsumerRecord<byte[], byte[]>> got = consumeAll(t, 200);
            MessageDigest h = MessageDigest.getInstance("SHA-256");
            for (ConsumerRecord<byte[], byte[]> r : got) {
                h.update(r.key());
                h.update(r.value());
            }
            byte[] d = h.digest();
            StringBuilder s = new StringBuilder();
            for (int i = 0; i < 8; i++) s.append(String.format("%02x", d[i]));
            Map<String, Object> m = new TreeMap<>();
            m.put("count", got.size());
            m.put("sha", s.toString());
            m.put("first", got.get(0).offset());
            m.put("last", got.get(got.size() - 1).offset());
            out.put(codec, m);
        }
        return out;
    }

    // ---- groups ----

    static void produceEach(String t, int partitions, int n) throws Exception {
        try (KafkaProducer<byte[], byte[]> p = producer("linger.ms", "20")) {
            for (int part = 0; part < partitions; part++) {
                for (int i = 0; i < n; i++) p.send(new ProducerRecord<>(t, part, null, bytes("p" + part + "-" + i)));
            }
            p.flush();
        }
    }

    static KafkaConsumer<byte[], byte[]> member() {
        KafkaConsumer<byte[], byte[]> c = consumer("group.id", group, "session.timeout.ms", "6000",
                "heartbeat.interval.ms", "500", "max.poll.records", "1000");
        c.subscribe(List.of(topic));
        return c;
    }

    static List<Integer> parts(KafkaConsumer<?, ?> c) {
        List<Integer> l = new ArrayList<>();
        for (TopicPartition tp : c.assignment()) l.add(tp.partition());
        Collections.sort(l);
        return l;
    }

    static Map<TopicPartition, OffsetAndMetadata> offsets(List<Integer> ps, long o) {
        Map<TopicPartition, OffsetAndMetadata> m = new HashMap<>();
        for (int p : ps) m.put(new TopicPartition(topic, p), new OffsetAndMetadata(o));
        return m;
    }

    static List<Long> committedSorted() throws Exception {
        List<Long> l = new ArrayList<>();
        for (var e : adm().listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().entrySet()) {
            if (e.getKey().topic().equals(topic)) l.add(e.getValue().offset());
        }
        Collections.sort(l);
        return l;
    }

    static Object groupSplitTakeover() throws Exception {
        createTopic(topic, 4, null);
        produceEach(topic, 4, 10);
        KafkaConsumer<byte[], byte[]> a = member();
        KafkaConsumer<byte[], byte[]> b = member();
        // One thread polls both in turn, so both take part in the rebalances; each reads
        // all of what it is assigned.
        Map<Integer, Integer> seenA = new HashMap<>(), seenB = new HashMap<>();
        long deadline = System.currentTimeMillis() + 60_000;
        while (true) {
            for (var r : a.poll(Duration.ofMillis(100))) seenA.merge(r.partition(), 1, Integer::sum);
            for (var r : b.poll(Duration.ofMillis(100))) seenB.merge(r.partition(), 1, Integer::sum);
            List<Integer> pa = parts(a), pb = parts(b);
            boolean split = pa.size() + pb.size() == 4 && !pa.isEmpty() && !pb.isEmpty();
            if (split && pa.stream().allMatch(p -> seenA.getOrDefault(p, 0) >= 10)
                    && pb.stream().allMatch(p -> seenB.getOrDefault(p, 0) >= 10)) break;
            if (System.currentTimeMillis() > deadline) die("no split: A " + pa + " " + seenA + ", B " + pb + " " + seenB);
        }
        List<Integer> pa = parts(a), pb = parts(b);
        log("A " + pa + ", B " + pb);
        a.commitSync(offsets(pa, 6));
        b.commitSync(offsets(pb, 4));
        List<Long> committed = committedSorted();
        // B leaves: close() sends LeaveGroup (a dynamic member always leaves on close).
        b.close();
        Map<Integer, Long> firsts = new HashMap<>();
        deadline = System.currentTimeMillis() + 60_000;
        while (parts(a).size() != 4 || !firsts.keySet().containsAll(pb)) {
            if (System.currentTimeMillis() > deadline) die("no takeover: A " + parts(a) + ", first offsets " + firsts);
            for (var r : a.poll(Duration.ofMillis(200))) firsts.putIfAbsent(r.partition(), r.offset());
        }
        List<Long> resumed = new ArrayList<>();
        for (int p : pb) resumed.add(firsts.get(p));
        boolean ownReread = false;
        for (int p : pa) ownReread |= firsts.containsKey(p);
        a.close();
        Map<String, Object> out = new TreeMap<>();
        out.put("assignor", "Java default list [range, cooperative-sticky]: range is chosen");
        out.put("how_b_ends", "leaves: close() sends LeaveGroup");
        out.put("sizes", List.of(pa.size(), pb.size()));
        out.put("a_after_takeover", 4);
        out.put("committed", committed);
        out.put("taken_over_resumed_at", resumed);
        out.put("a_reread_own", ownReread);
        return out;
    }

    static Object groupRestartResume() throws Exception {
        createTopic(topic, 2, null);
        produceEach(topic, 2, 10);
        Map<Integer, Integer> seen = new HashMap<>();
        try (KafkaConsumer<byte[], byte[]> m = member()) {
            long deadline = System.currentTimeMillis() + 30_000;
            while (seen.getOrDefault(0, 0) < 10 || seen.getOrDefault(1, 0) < 10) {
                if (System.currentTimeMillis() > deadline) die("first member saw " + seen);
                for (var r : m.poll(Duration.ofMillis(200))) seen.merge(r.partition(), 1, Integer::sum);
            }
            Map<TopicPartition, OffsetAndMetadata> c = new HashMap<>();
            c.put(new TopicPartition(topic, 0), new OffsetAndMetadata(7));
            c.put(new TopicPartition(topic, 1), new OffsetAndMetadata(3));
            m.commitSync(c);
        }
        Map<String, Object> committed = new TreeMap<>();
        for (var e : adm().listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().entrySet()) {
            committed.put(Integer.toString(e.getKey().partition()), e.getValue().offset());
        }
        Map<String, Long> first = new TreeMap<>();
        Map<String, Integer> count = new TreeMap<>();
        try (KafkaConsumer<byte[], byte[]> m = member()) {
            long deadline = System.currentTimeMillis() + 30_000;
            while (count.getOrDefault("0", 0) < 3 || count.getOrDefault("1", 0) < 7) {
                if (System.currentTimeMillis() > deadline) die("restarted member saw " + count);
                for (var r : m.poll(Duration.ofMillis(200))) {
                    first.putIfAbsent(Integer.toString(r.partition()), r.offset());
                    count.merge(Integer.toString(r.partition()), 1, Integer::sum);
                }
            }
        }
        Map<String, Object> out = new TreeMap<>();
        out.put("committed", committed);
        out.put("resumed_at", first);
        out.put("reread", count);
        out.put("how_a_stops", "close() (LeaveGroup)");
        return out;
    }

    // ---- offsets-by-time ----

    static final long T0 = 1_700_000_000_000L;

    static Object offsetsByTime() throws Exception {
        createTopic(topic, 1, null);
        try (KafkaProducer<byte[], byte[]> p = producer("linger.ms", "1000")) {
            // Two batches: [t0, t0+1000] and [t0+2000, t0+2000, t0+3000].
            p.send(new ProducerRecord<>(topic, 0, T0, null, bytes("a")));
            p.send(new ProducerRecord<>(topic, 0, T0 + 1000, null, bytes("b")));
            p.flush();
            p.send(new ProducerRecord<>(topic, 0, T0 + 2000, null, bytes("c")));
            p.send(new ProducerRecord<>(topic, 0, T0 + 2000, null, bytes("d")));
            p.send(new ProducerRecord<>(topic, 0, T0 + 3000, null, bytes("e")));
            p.flush();
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        Map<String, Object> out = new TreeMap<>();
        Map<String, Long> at = new LinkedHashMap<>();
        at.put("before", T0 - 500);
        at.put("at_first", T0);
        at.put("between_first_and_second", T0 + 500);
        at.put("at_second", T0 + 1000);
        at.put("between_batches", T0 + 1500);
        at.put("at_duplicate", T0 + 2000);
        at.put("at_last", T0 + 3000);
        at.put("after", T0 + 5000);
        for (var e : at.entrySet()) {
            // AdminClient.listOffsets: the broker's answer as it is (-1/-1 when none).
            ListOffsetsResult.ListOffsetsResultInfo i =
                    adm().listOffsets(Map.of(tp, OffsetSpec.forTimestamp(e.getValue()))).partitionResult(tp).get();
            Map<String, Object> m = new TreeMap<>();
            m.put("offset", i.offset());
            m.put("timestamp", i.timestamp());
            out.put(e.getKey(), m);
        }
        ListOffsetsResult.ListOffsetsResultInfo earliest =
                adm().listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get();
        ListOffsetsResult.ListOffsetsResultInfo latest =
                adm().listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get();
        out.put("earliest", earliest.offset());
        out.put("latest", latest.offset());
        // The consumer's offsetsForTimes (null when none), beginningOffsets and endOffsets.
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            Map<String, Object> ft = new TreeMap<>();
            for (String k : List.of("between_first_and_second", "at_duplicate", "after")) {
                OffsetAndTimestamp o = c.offsetsForTimes(Map.of(tp, at.get(k))).get(tp);
                ft.put(k, o == null ? null : List.of(o.offset(), o.timestamp()));
            }
            out.put("consumer_offsets_for_times", ft);
            out.put("consumer_beginning", c.beginningOffsets(List.of(tp)).get(tp));
            out.put("consumer_end", c.endOffsets(List.of(tp)).get(tp));
        }
        return out;
    }

    // ---- out-of-range ----

    static Object outOfRange() throws Exception {
        createTopic(topic, 1, null);
        produceEach(topic, 1, 5);
        TopicPartition tp = new TopicPartition(topic, 0);
        Map<String, Object> out = new TreeMap<>();
        // Committing past the end is accepted by Kafka (offsets are not checked).
        try {
            adm().alterConsumerGroupOffsets(group, Map.of(tp, new OffsetAndMetadata(100))).all().get();
            out.put("commit_past_end", err(null));
        } catch (Exception e) {
            out.put("commit_past_end", err(e));
        }
        out.put("committed_past_end", committedSorted());
        for (String reset : List.of("earliest", "latest", "none")) {
            // A group member starting at the committed offset 100.
            try (KafkaConsumer<byte[], byte[]> c = consumer("group.id", group, "auto.offset.reset", reset)) {
                c.subscribe(List.of(topic));
                out.put("group_" + reset, firstAfterBadOffset(c));
            }
            // A consumer without a group, assigned and seeked past the end.
            try (KafkaConsumer<byte[], byte[]> c = consumer("auto.offset.reset", reset)) {
                c.assign(List.of(tp));
                c.seek(tp, 100);
                out.put("seek_" + reset, firstAfterBadOffset(c));
            }
        }
        return out;
    }

    // The first record's offset after the reset (producing one more record if none comes
    // within 2 s, which "latest" needs), or the error.
    static Object firstAfterBadOffset(KafkaConsumer<byte[], byte[]> c) throws Exception {
        Map<String, Object> m = new TreeMap<>();
        long start = System.currentTimeMillis();
        boolean produced = false;
        while (System.currentTimeMillis() - start < 8_000) {
            ConsumerRecords<byte[], byte[]> rs;
            try {
                rs = c.poll(Duration.ofMillis(200));
            } catch (Exception e) {
                return err(e);
            }
            if (!rs.isEmpty()) {
                m.put("first_offset", rs.iterator().next().offset());
                m.put("needed_a_new_record", produced);
                return m;
            }
            if (!produced && System.currentTimeMillis() - start > 2_000) {
                produceEach(topic, 1, 1);
                produced = true;
            }
        }
        m.put("result", "nothing within 8 s");
        return m;
    }

    // ---- admin ----

    static Map<String, Object> configs(ConfigResource r, List<String> keys) {
        Map<String, Object> m = new TreeMap<>();
        try {
            Config c = adm().describeConfigs(List.of(r)).all().get().get(r);
            for (String k : keys) {
                ConfigEntry e = c.get(k);
                if (e == null) {
                    m.put(k, "absent");
                } else {
                    Map<String, Object> v = new TreeMap<>();
                    v.put("value", e.value());
                    // Whether it was set on the resource itself; the other sources (static
                    // file, cluster default, built-in default) are how each broker's
                    // deployment happens to be configured.
                    v.put("set_on_topic", e.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
                    m.put(k, v);
                }
            }
        } catch (Exception e) {
            return err(e);
        }
        return m;
    }

    static Object admin() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        String ta = topic + "-a", tb = topic + "-b";
        try {
            adm().createTopics(List.of(new NewTopic(ta, 3, (short) 1),
                    new NewTopic(tb, 1, (short) 1).configs(Map.of("retention.ms", "3600000")))).all().get();
            out.put("create", err(null));
        } catch (Exception e) {
            out.put("create", err(e));
        }
        try {
            adm().createTopics(List.of(new NewTopic(ta, 3, (short) 1))).all().get();
            out.put("create_a_again", err(null));
        } catch (Exception e) {
            out.put("create_a_again", err(e));
        }
        waitForTopic(ta, 3);
        waitForTopic(tb, 1);
        Set<String> names = adm().listTopics().names().get();
        out.put("list_topics_has_a_b", names.contains(ta) && names.contains(tb));
        Map<String, Object> described = new TreeMap<>();
        for (var e : adm().describeTopics(List.of(ta, tb)).allTopicNames().get().entrySet()) {
            Map<String, Object> d = new TreeMap<>();
            d.put("partitions", e.getValue().partitions().size());
            List<Integer> rf = new ArrayList<>();
            for (TopicPartitionInfo p : e.getValue().partitions()) rf.add(p.replicas().size());
            d.put("replicas", rf);
            d.put("internal", e.getValue().isInternal());
            described.put(e.getKey().substring(topic.length()), d);
        }
        out.put("describe_topics", described);
        out.put("describe_topic_configs", configs(new ConfigResource(ConfigResource.Type.TOPIC, tb),
                List.of("cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "max.message.bytes",
                        "compression.type", "message.timestamp.type", "min.insync.replicas")));
        DescribeClusterResult dc = adm().describeCluster();
        Collection<Node> nodes = dc.nodes().get();
        Node controller = dc.controller().get();
        String clusterId = dc.clusterId().get();
        Map<String, Object> cl = new TreeMap<>();
        cl.put("nodes", nodes.size());
        cl.put("controller_is_a_node", controller != null && nodes.stream().anyMatch(n -> n.id() == controller.id()));
        cl.put("has_cluster_id", clusterId != null && !clusterId.isEmpty());
        out.put("describe_cluster", cl);
        String node = Integer.toString(nodes.iterator().next().id());
        out.put("describe_broker_configs", configs(new ConfigResource(ConfigResource.Type.BROKER, node),
                List.of("auto.create.topics.enable", "num.partitions", "message.max.bytes", "default.replication.factor")));
        try {
            adm().deleteTopics(List.of(ta)).all().get();
            out.put("delete_a", err(null));
        } catch (Exception e) {
            out.put("delete_a", err(e));
        }
        boolean gone = false;
        for (int i = 0; i < 50 && !gone; i++) {
            gone = !adm().listTopics().names().get().contains(ta);
            if (!gone) Thread.sleep(100);
        }
        out.put("a_gone_from_list", gone);
        // A group with committed offsets: a member joins, reads, commits, and leaves.
        produceEach(tb, 1, 3);
        try (KafkaConsumer<byte[], byte[]> c = consumer("group.id", group)) {
            c.subscribe(List.of(tb));
            int seen = 0;
            long deadline = System.currentTimeMillis() + 30_000;
            while (seen < 3) {
                if (System.currentTimeMillis() > deadline) die("the group member saw " + seen);
                seen += c.poll(Duration.ofMillis(200)).count();
            }
            c.commitSync();
        }
        Map<String, Object> listed = null;
        for (ConsumerGroupListing g : adm().listConsumerGroups().all().get()) {
            if (g.groupId().equals(group)) {
                listed = new TreeMap<>();
                listed.put("state", g.groupState().map(Object::toString).orElse(null));
                listed.put("type", g.type().map(Object::toString).orElse(null));
                listed.put("simple", g.isSimpleConsumerGroup());
            }
        }
        out.put("list_consumer_groups", listed);
        ConsumerGroupDescription d = adm().describeConsumerGroups(List.of(group)).all().get().get(group);
        Map<String, Object> dg = new TreeMap<>();
        dg.put("state", d.groupState().toString());
        dg.put("members", d.members().size());
        dg.put("assignor", d.partitionAssignor());
        dg.put("simple", d.isSimpleConsumerGroup());
        dg.put("type", d.type().toString());
        out.put("describe_consumer_groups", dg);
        Map<String, Object> offs = new TreeMap<>();
        for (var e : adm().listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().entrySet()) {
            offs.put(e.getKey().topic().substring(topic.length()) + "/" + e.getKey().partition(), e.getValue().offset());
        }
        out.put("list_consumer_group_offsets", offs);
        return out;
    }

    // ---- errors ----

    static Object errors() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        String missing = topic + "-missing";
        // Produce to a topic that does not exist (auto-creation off on both brokers).
        try (KafkaProducer<byte[], byte[]> p = producer("max.block.ms", "2000", "delivery.timeout.ms", "3000",
                "request.timeout.ms", "2000", "linger.ms", "0")) {
            p.send(new ProducerRecord<>(missing, bytes("x"))).get();
            out.put("produce_unknown_topic", err(null));
        } catch (Exception e) {
            out.put("produce_unknown_topic", err(e));
        }
        try {
            adm().describeTopics(List.of(missing)).allTopicNames().get();
            out.put("describe_unknown_topic", err(null));
        } catch (Exception e) {
            out.put("describe_unknown_topic", err(e));
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            out.put("consumer_partitions_for_unknown_topic", c.partitionsFor(missing, Duration.ofSeconds(5)).size());
        } catch (Exception e) {
            out.put("consumer_partitions_for_unknown_topic", err(e));
        }
        // An oversize record: 1,100,000 bytes > Kafka's default max.message.bytes (1048588);
        // the producer's own max.request.size is raised so the broker is the one to refuse it.
        createTopic(topic, 1, null);
        try (KafkaProducer<byte[], byte[]> p = producer("max.request.size", Integer.toString(2 << 20),
                "delivery.timeout.ms", "10000", "request.timeout.ms", "5000")) {
            try {
                p.send(new ProducerRecord<>(topic, new byte[1_100_000])).get();
                out.put("oversize_record", err(null));
            } catch (Exception e) {
                out.put("oversize_record", err(e));
            }
            try {
                p.send(new ProducerRecord<>(topic, bytes("small"))).get();
                out.put("small_after_oversize", err(null));
            } catch (Exception e) {
                out.put("small_after_oversize", err(e));
            }
        }
        // DescribeAcls: Kafka without an authorizer answers SECURITY_DISABLED.
        try {
            adm().describeAcls(AclBindingFilter.ANY).values().get();
            out.put("describe_acls", err(null));
        } catch (Exception e) {
            out.put("describe_acls", err(e));
        }
        // An API neither broker offers by default: ShareGroupDescribe (KIP-932).
        try {
            adm().describeShareGroups(List.of(group)).all().get();
            out.put("describe_share_groups", err(null));
        } catch (Exception e) {
            out.put("describe_share_groups", err(e));
        }
        return out;
    }

    // ---- JSON ----

    static String json(Object o) {
        StringBuilder s = new StringBuilder();
        write(s, o);
        return s.toString();
    }

    static void write(StringBuilder s, Object o) {
        if (o == null) {
            s.append("null");
        } else if (o instanceof String) {
            s.append('"');
            for (char c : ((String) o).toCharArray()) {
                switch (c) {
                    case '"': s.append("\\\""); break;
                    case '\\': s.append("\\\\"); break;
                    case '\n': s.append("\\n"); break;
                    default:
                        if (c < 0x20) s.append(String.format("\\u%04x", (int) c));
                        else s.append(c);
                }
            }
            s.append('"');
        } else if (o instanceof Number || o instanceof Boolean) {
            s.append(o);
        } else if (o instanceof Map) {
            s.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : new TreeMap<>((Map<?, ?>) o).entrySet()) {
                if (!first) s.append(',');
                first = false;
                write(s, e.getKey().toString());
                s.append(':');
                write(s, e.getValue());
            }
            s.append('}');
        } else if (o instanceof Collection) {
            s.append('[');
            boolean first = true;
            for (Object x : (Collection<?>) o) {
                if (!first) s.append(',');
                first = false;
                write(s, x);
            }
            s.append(']');
        } else {
            write(s, o.toString());
        }
    }
}
