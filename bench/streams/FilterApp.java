// FilterApp — the Java side of bench/kafka-side-by-side.sh (issue 11).
//
// Three modes, one class, compiled by the script with `javac -cp "$(scripts/kafka.sh classpath)"`
// into target/side-by-side/classes:
//
//   load BOOTSTRAP TOPIC N PARTITIONS [K=V ...]
//       Produces records 0..N-1 with the Java producer, record i to partition i % PARTITIONS,
//       no key, the value `value(i)` of bench/src/workload.rs (about 100 bytes of JSON, every
//       fourth one "blue"). The same loader fills Apache Kafka and Rill.
//   streams BOOTSTRAP IN OUT N THREADS PIDS
//       The Kafka Streams filter: forwards every record of IN whose value contains "blue" to
//       OUT unchanged (key, value, headers), as examples/filter does. All input is present
//       before it starts. t0 is the moment the instance turns RUNNING; the end is the moment
//       OUT's end offsets reach N/4 (polled every 5 ms). CPU = this JVM (less the polling
//       thread) + the processes PIDS (the broker), from /proc/<pid>/stat over [t0, end].
//   watch BOOTSTRAP OUT N RESUME_URL PIDS
//       The same clock for a Rill deployment of the Wasm filter, deployed paused: t0 is just
//       before it POSTs RESUME_URL (the admin API's resume); the end, as above. CPU = the
//       processes PIDS (the Rill host). This JVM is not counted.
//
// PIDS is a comma-separated list. Each mode prints one line `RESULT key=value ...`.

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

public final class FilterApp {
    private static final String[] COLORS = {"red", "green", "blue", "yellow"};
    private static final byte[] BLUE = "blue".getBytes(StandardCharsets.US_ASCII);
    private static final long CLK_TCK = 100; // `getconf CLK_TCK` on Linux/x86-64

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            usage();
        }
        switch (args[0]) {
            case "load" -> load(args);
            case "streams" -> streams(args);
            case "watch" -> watch(args);
            default -> usage();
        }
    }

    private static void usage() {
        System.err.println("usage: FilterApp load BOOTSTRAP TOPIC N PARTITIONS [K=V ...]\n"
                + "       FilterApp streams BOOTSTRAP IN OUT N THREADS PIDS\n"
                + "       FilterApp watch BOOTSTRAP OUT N RESUME_URL PIDS");
        System.exit(2);
    }

    /** The value of record i, byte for byte what bench/src/workload.rs `value(i)` makes. */
    static byte[] value(long i) {
        String color = COLORS[(int) (i % 4)];
        StringBuilder v = new StringBuilder(104);
        v.append("{\"id\":").append(i)
                .append(",\"user\":\"user-").append(String.format("%05d", i % 100_000))
                .append("\",\"color\":\"").append(color)
                .append("\",\"amount_cents\":").append((i * 7919) % 100_000)
                .append(",\"note\":");
        int pad = Math.max(0, 97 - v.length());
        v.append('"');
        v.append("x".repeat(pad));
        v.append("\"}");
        return v.toString().getBytes(StandardCharsets.US_ASCII);
    }

    /** Whether `hay` contains "blue" (a plain scan; the guest uses memchr's memmem). */
    static boolean containsBlue(byte[] hay) {
        if (hay == null) {
            return false;
        }
        outer:
        for (int i = 0, end = hay.length - BLUE.length; i <= end; i++) {
            for (int j = 0; j < BLUE.length; j++) {
                if (hay[i + j] != BLUE[j]) {
                    continue outer;
                }
            }
            return true;
        }
        return false;
    }

    private static void load(String[] a) throws Exception {
        if (a.length < 5) {
            usage();
        }
        String topic = a[2];
        long n = Long.parseLong(a[3]);
        int partitions = Integer.parseInt(a[4]);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a[1]);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        for (int i = 5; i < a.length; i++) {
            int eq = a[i].indexOf('=');
            p.put(a[i].substring(0, eq), a[i].substring(eq + 1));
        }
        AtomicReference<Exception> failed = new AtomicReference<>();
        long t = System.nanoTime();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (long i = 0; i < n && failed.get() == null; i++) {
                producer.send(new ProducerRecord<>(topic, (int) (i % partitions), null, value(i)),
                        (md, e) -> {
                            if (e != null) {
                                failed.compareAndSet(null, e);
                            }
                        });
            }
            producer.flush();
        }
        if (failed.get() != null) {
            throw failed.get();
        }
        double secs = (System.nanoTime() - t) / 1e9;
        System.out.printf("RESULT mode=load records=%d secs=%.3f rate=%.0f%n", n, secs, n / secs);
    }

    private static void streams(String[] a) throws Exception {
        if (a.length < 7) {
            usage();
        }
        String bootstrap = a[1], in = a[2], out = a[3];
        long n = Long.parseLong(a[4]);
        int threads = Integer.parseInt(a[5]);
        List<Long> pids = pids(a[6]);
        pids.add(ProcessHandle.current().pid());
        long expected = expectedBlue(n);

        Path stateDir = Files.createTempDirectory("rill-bench-streams");
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, "rill-bench-filter-" + in);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class.getName());
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class.getName());
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        StreamsBuilder b = new StreamsBuilder();
        b.stream(in, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .filter((k, v) -> containsBlue(v))
                .to(out, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        AtomicLong t0 = new AtomicLong();
        AtomicLong cpu0 = new AtomicLong();
        CountDownLatch running = new CountDownLatch(1);
        KafkaStreams streams = new KafkaStreams(b.build(), p);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING && t0.get() == 0) {
                cpu0.set(cpuNanos(pids));
                t0.set(System.nanoTime());
                running.countDown();
            }
        });
        // Connect the polling consumer before the clock starts.
        KafkaConsumer<byte[], byte[]> c = outputConsumer(bootstrap);
        List<TopicPartition> tps = partitionsOf(c, out);
        c.endOffsets(tps);
        streams.start();
        running.await();
        Done d = poll(c, tps, expected, t0.get());
        long cpu = d.cpuNanos(pids) - cpu0.get();
        c.close();
        streams.close(Duration.ofSeconds(30));
        report("streams", n, expected, d, cpu);
        System.exit(0);
    }

    private static void watch(String[] a) throws Exception {
        if (a.length < 6) {
            usage();
        }
        String bootstrap = a[1], out = a[2];
        long n = Long.parseLong(a[3]);
        URI resume = URI.create(a[4]);
        List<Long> pids = pids(a[5]);
        long expected = expectedBlue(n);
        // Connect the polling consumer before the clock starts.
        try (KafkaConsumer<byte[], byte[]> c = outputConsumer(bootstrap)) {
            List<TopicPartition> tps = partitionsOf(c, out);
            c.endOffsets(tps);
            HttpClient http = HttpClient.newHttpClient();
            long cpu0 = cpuNanos(pids);
            long t0 = System.nanoTime();
            HttpResponse<String> r = http.send(
                    HttpRequest.newBuilder(resume).header("content-type", "application/json")
                            .POST(HttpRequest.BodyPublishers.ofString("{}")).build(),
                    HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() / 100 != 2) {
                throw new IllegalStateException("resume answered " + r.statusCode() + ": " + r.body());
            }
            Done d = poll(c, tps, expected, t0);
            long cpu = cpuNanos(pids) - cpu0;
            report("watch", n, expected, d, cpu);
        }
        System.exit(0);
    }

    static long expectedBlue(long n) {
        // Records i with i % 4 == 2.
        return n / 4 + (n % 4 > 2 ? 1 : 0);
    }

    /** When the output was complete, and the polling thread's own CPU to subtract. */
    record Done(long t0, long tFirst, long tEnd, long outRecords, long pollerCpu) {
        long cpuNanos(List<Long> pids) {
            return FilterApp.cpuNanos(pids) - pollerCpu;
        }
    }

    private static Done poll(KafkaConsumer<byte[], byte[]> c, List<TopicPartition> tps, long expected, long t0)
            throws InterruptedException {
        ThreadMXBean tm = ManagementFactory.getThreadMXBean();
        long myCpu0 = tm.getCurrentThreadCpuTime();
        long tFirst = 0;
        long deadline = System.nanoTime() + Duration.ofMinutes(10).toNanos();
        while (true) {
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            long sum = ends.values().stream().mapToLong(Long::longValue).sum();
            long now = System.nanoTime();
            if (sum > 0 && tFirst == 0) {
                tFirst = now;
            }
            if (sum >= expected) {
                return new Done(t0, tFirst, now, sum, tm.getCurrentThreadCpuTime() - myCpu0);
            }
            if (now > deadline) {
                throw new IllegalStateException("output has " + sum + " of " + expected + " records after 10 min");
            }
            Thread.sleep(5);
        }
    }

    private static KafkaConsumer<byte[], byte[]> outputConsumer(String bootstrap) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    private static List<TopicPartition> partitionsOf(KafkaConsumer<byte[], byte[]> c, String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
            tps.add(new TopicPartition(topic, pi.partition()));
        }
        return tps;
    }

    private static void report(String mode, long n, long expected, Done d, long cpuNanos) {
        double secs = (d.tEnd() - d.t0()) / 1e9;
        double firstToLast = (d.tEnd() - d.tFirst()) / 1e9;
        System.out.printf("RESULT mode=%s records=%d out=%d expected=%d secs=%.3f rate=%.0f"
                        + " first_output_secs=%.3f first_to_last_secs=%.3f cpu_secs=%.3f cpu_ns_per_record=%.0f%n",
                mode, n, d.outRecords(), expected, secs, n / secs, (d.tFirst() - d.t0()) / 1e9,
                firstToLast, cpuNanos / 1e9, cpuNanos / (double) n);
    }

    private static List<Long> pids(String s) {
        List<Long> out = new ArrayList<>();
        for (String p : s.split(",")) {
            if (!p.isBlank()) {
                out.add(Long.parseLong(p.trim()));
            }
        }
        return out;
    }

    /** utime + stime of every process in `pids` (all their threads), in nanoseconds. */
    static long cpuNanos(List<Long> pids) {
        long ticks = 0;
        for (long pid : pids) {
            try {
                String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
                // The command name is in parentheses and may hold spaces: split after it.
                String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                // Fields 14 and 15 of stat(5) are utime and stime; f[0] is field 3.
                ticks += Long.parseLong(f[11]) + Long.parseLong(f[12]);
            } catch (Exception e) {
                throw new IllegalStateException("cannot read the CPU time of pid " + pid, e);
            }
        }
        return ticks * (1_000_000_000L / CLK_TCK);
    }
}
