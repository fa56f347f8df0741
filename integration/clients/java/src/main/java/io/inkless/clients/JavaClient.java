package io.inkless.clients;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The client scenario (integration/clients/SCENARIO.md) with the official Java client.
 *
 * <p>Producer: DEFAULT settings (idempotent, acks=all) except compression.type when
 * SCENARIO_COMPRESSION is set. Consumer: no group.id, assign + seekToBeginning, no commits.
 */
public final class JavaClient {
    static final String CLIENT = "java";
    static final String FILLER = "abcdefghijklmnopqrstuvwxyz0123456789";

    static final class ScenarioError extends RuntimeException {
        ScenarioError(String msg) {
            super(msg);
        }
    }

    final String bootstrap;
    final String topic;
    final int partitions;
    final int count;
    final String mode;
    final boolean create;
    final long baseTs;
    final String compression;
    final long timeoutMs;

    JavaClient(String[] argv) {
        if (argv.length != 4) {
            throw new IllegalArgumentException("usage: JavaClient BOOTSTRAP TOPIC PARTITIONS COUNT (see SCENARIO.md)");
        }
        bootstrap = argv[0];
        topic = argv[1];
        partitions = Integer.parseInt(argv[2]);
        count = Integer.parseInt(argv[3]);
        mode = env("SCENARIO_MODE", "all");
        if (!List.of("all", "produce", "consume").contains(mode)) {
            throw new IllegalArgumentException("bad SCENARIO_MODE " + mode);
        }
        create = !env("SCENARIO_CREATE", "1").equals("0");
        String base = env("SCENARIO_BASE_TS", "");
        baseTs = base.isEmpty() ? (System.currentTimeMillis() - 600_000) / 1000 * 1000 : Long.parseLong(base);
        compression = env("SCENARIO_COMPRESSION", "none");
        timeoutMs = (long) (Double.parseDouble(env("SCENARIO_TIMEOUT", "120")) * 1000);
        if (partitions < 1 || count < 0) {
            throw new IllegalArgumentException("PARTITIONS must be >= 1 and COUNT >= 0");
        }
    }

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null ? dflt : v;
    }

    // ---- the scenario's records ----

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    int partitionOf(int i) {
        return i % partitions;
    }

    static byte[] keyOf(int i) {
        return utf8(String.format("key-%06d", i));
    }

    static byte[] valueOf(int i) {
        if (i % 50 == 49) {
            return null;
        }
        int n = (i * 37) % 300;
        StringBuilder sb = new StringBuilder(String.format("value-%06d-", i));
        for (int k = 0; k < n; k++) {
            sb.append(FILLER.charAt(k % FILLER.length()));
        }
        return utf8(sb.toString());
    }

    long timestampOf(int i) {
        return baseTs + i;
    }

    static List<Header> headersOf(int i) {
        List<Header> h = new ArrayList<>();
        h.add(new RecordHeader("idx", utf8(Integer.toString(i))));
        h.add(new RecordHeader("src", utf8("inkless-test")));
        h.add(new RecordHeader("dup", utf8("1")));
        h.add(new RecordHeader("dup", utf8("2")));
        if (i % 3 == 0) {
            h.add(new RecordHeader("empty", new byte[0]));
        }
        return h;
    }

    Map<Integer, Integer> expectedPerPartition() {
        Map<Integer, Integer> m = new HashMap<>();
        for (int p = 0; p < partitions; p++) {
            m.put(p, 0);
        }
        for (int i = 0; i < count; i++) {
            m.merge(partitionOf(i), 1, Integer::sum);
        }
        return m;
    }

    ScenarioError fail(String msg) {
        return new ScenarioError(CLIENT + ": topic " + topic + ": " + msg);
    }

    // ---- admin ----

    Properties common() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return p;
    }

    void createTopic() throws Exception {
        try (Admin admin = Admin.create(common())) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                    .all()
                    .get(timeoutMs, TimeUnit.MILLISECONDS);
            waitTopic(admin);
        }
    }

    void waitTopic(Admin admin) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        String last = "";
        while (System.currentTimeMillis() < deadline) {
            try {
                TopicDescription d = admin.describeTopics(List.of(topic))
                        .allTopicNames()
                        .get(10, TimeUnit.SECONDS)
                        .get(topic);
                List<TopicPartitionInfo> ps = d.partitions();
                if (ps.size() == partitions && ps.stream().allMatch(p -> p.leader() != null)) {
                    return;
                }
                last = ps.size() + " partitions";
            } catch (ExecutionException e) {
                last = e.getCause().toString();
            }
            Thread.sleep(200);
        }
        throw fail("not ready with " + partitions + " partitions after " + timeoutMs + " ms (last: " + last + ")");
    }

    // ---- produce ----

    void produce() throws Exception {
        Properties p = common();
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        if (!compression.equals("none")) {
            p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        }
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                futures.add(producer.send(new ProducerRecord<>(
                        topic, partitionOf(i), timestampOf(i), keyOf(i), valueOf(i), headersOf(i))));
            }
            producer.flush();
            for (int i = 0; i < count; i++) {
                RecordMetadata md;
                try {
                    md = futures.get(i).get(timeoutMs, TimeUnit.MILLISECONDS);
                } catch (ExecutionException e) {
                    throw fail("record " + i + ": delivery failed: " + e.getCause());
                }
                if (md.partition() != partitionOf(i)) {
                    throw fail("record " + i + ": delivered to partition " + md.partition()
                            + ", expected " + partitionOf(i));
                }
            }
        }
    }

    // ---- consume ----

    static String show(byte[] b) {
        return b == null ? "null" : "\"" + new String(b, StandardCharsets.UTF_8) + "\"";
    }

    static String showHeaders(List<Header> hs) {
        StringBuilder sb = new StringBuilder("[");
        for (Header h : hs) {
            sb.append('(').append(h.key()).append(", ").append(show(h.value())).append(')');
        }
        return sb.append(']').toString();
    }

    static boolean sameHeaders(List<Header> a, List<Header> b) {
        if (a.size() != b.size()) {
            return false;
        }
        for (int k = 0; k < a.size(); k++) {
            if (!a.get(k).key().equals(b.get(k).key()) || !Arrays.equals(a.get(k).value(), b.get(k).value())) {
                return false;
            }
        }
        return true;
    }

    void consume() throws Exception {
        try (Admin admin = Admin.create(common())) {
            waitTopic(admin);
        }
        Properties p = common();
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        Map<Integer, Integer> expected = expectedPerPartition();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int q = 0; q < partitions; q++) {
                tps.add(new TopicPartition(topic, q));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofMillis(timeoutMs));
            for (TopicPartition tp : tps) {
                long want = expected.get(tp.partition());
                Long got = ends.get(tp);
                if (got == null || got != want) {
                    throw fail("partition " + tp.partition() + ": end offset " + got + ", expected " + want);
                }
            }
            int[] next = new int[partitions];
            int total = 0;
            long deadline = System.currentTimeMillis() + timeoutMs;
            while (total < count) {
                if (System.currentTimeMillis() > deadline) {
                    throw fail("timed out after " + timeoutMs + " ms with " + total + "/" + count
                            + " records; per partition " + Arrays.toString(next));
                }
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    int q = r.partition();
                    if (q < 0 || q >= partitions) {
                        throw fail("record from unexpected partition " + q);
                    }
                    int j = next[q];
                    String where = "partition " + q + " offset " + r.offset();
                    if (r.offset() != j) {
                        throw fail("partition " + q + ": expected offset " + j + ", got " + r.offset()
                                + " (gap, duplicate or reordering)");
                    }
                    int i = q + j * partitions;
                    if (i >= count) {
                        throw fail(where + ": extra record (only " + count + " produced)");
                    }
                    if (!Arrays.equals(r.key(), keyOf(i))) {
                        throw fail(where + ": key " + show(r.key()) + ", expected " + show(keyOf(i)));
                    }
                    if (!Arrays.equals(r.value(), valueOf(i))) {
                        throw fail(where + " (record " + i + "): value " + show(r.value()) + ", expected "
                                + show(valueOf(i)));
                    }
                    if (r.timestampType() != TimestampType.CREATE_TIME || r.timestamp() != timestampOf(i)) {
                        throw fail(where + " (record " + i + "): timestamp " + r.timestampType() + " "
                                + r.timestamp() + ", expected CreateTime " + timestampOf(i));
                    }
                    List<Header> got = Arrays.asList(r.headers().toArray());
                    if (!sameHeaders(got, headersOf(i))) {
                        throw fail(where + " (record " + i + "): headers " + showHeaders(got) + ", expected "
                                + showHeaders(headersOf(i)));
                    }
                    next[q] = j + 1;
                    total++;
                }
            }
            for (int q = 0; q < partitions; q++) {
                if (next[q] != expected.get(q)) {
                    throw fail("partition " + q + ": consumed " + next[q] + ", expected " + expected.get(q));
                }
            }
        }
    }

    public static void main(String[] argv) {
        long start = System.nanoTime();
        JavaClient c;
        try {
            c = new JavaClient(argv);
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage());
            System.exit(2);
            return;
        }
        try {
            if (!c.mode.equals("consume")) {
                if (c.create) {
                    c.createTopic();
                }
                c.produce();
            }
            if (!c.mode.equals("produce")) {
                c.consume();
            }
        } catch (ScenarioError e) {
            System.err.println("FAIL " + e.getMessage());
            System.exit(1);
        } catch (Exception e) {
            e.printStackTrace();
            System.err.println("FAIL " + CLIENT + ": " + e);
            System.exit(1);
        }
        System.out.printf("OK %s %s %d records in %.1fs%n", CLIENT, c.mode, c.count, (System.nanoTime() - start) / 1e9);
        System.exit(0);
    }
}
