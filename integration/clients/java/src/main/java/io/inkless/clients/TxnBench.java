package io.inkless.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Transactional produce benchmark for scripts/bench/txn-compare.sh: one producer writes RECORDS
 * records of RECORD_SIZE bytes to a new topic of PARTITIONS partitions, while one read_committed
 * consumer reads them.
 *
 * <pre>
 * TxnBench BOOTSTRAP TOPIC PARTITIONS MODE RECORDS RECORD_SIZE RATE
 *   MODE  plain      an idempotent producer, no transactions
 *         records:N  a transaction per N records
 *         ms:T       a transaction per T ms (commit when T ms passed since it began)
 *         read       only read RECORDS records of the existing TOPIC from its start
 *                    (read_committed, a catch-up read); prints RESULT read seconds=S
 *   RATE  records/s to send at, 0 = as fast as the producer goes
 * </pre>
 *
 * Prints one line "RESULT k=v ...": throughput (records/s, MB/s, from the first send to the
 * last commit), transactions, commitTransaction latency p50/p99 (after an explicit flush, so
 * it is the EndTxn round trip), and the end-to-end latency p50/p99 from a record's create
 * time (set at send) until the read_committed consumer polled it. Exits 1 if the consumer did
 * not read every record exactly once (by count) within 60 s of the last commit.
 */
public final class TxnBench {
    private TxnBench() {}

    public static void main(String[] a) throws Exception {
        if (a.length != 7) {
            System.err.println("usage: TxnBench BOOTSTRAP TOPIC PARTITIONS MODE RECORDS RECORD_SIZE RATE");
            System.exit(2);
        }
        String bootstrap = a[0], topic = a[1], mode = a[3];
        int partitions = Integer.parseInt(a[2]);
        long records = Long.parseLong(a[4]);
        int size = Integer.parseInt(a[5]);
        double rate = Double.parseDouble(a[6]);
        long perTxn = mode.startsWith("records:") ? Long.parseLong(mode.substring(8)) : 0;
        long txnMs = mode.startsWith("ms:") ? Long.parseLong(mode.substring(3)) : 0;
        boolean txn = perTxn > 0 || txnMs > 0;
        if (mode.equals("read")) {
            catchUp(bootstrap, topic, partitions, records);
            return;
        }
        if (!txn && !mode.equals("plain")) {
            System.err.println("MODE is plain, records:N or ms:T");
            System.exit(2);
        }
        createTopic(bootstrap, topic, partitions);

        AtomicLong consumed = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        long[] e2e = new long[(int) records];
        Thread reader = new Thread(() -> consume(bootstrap, topic, partitions, e2e, consumed, stop));
        reader.start();

        byte[] value = new byte[size];
        new Random(1).nextBytes(value);
        List<Long> commits = new ArrayList<>();
        long t0 = System.nanoTime();
        long txns = 0;
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(producerProps(bootstrap, txn ? "bench-" + topic : null))) {
            if (txn) {
                p.initTransactions();
            }
            t0 = System.nanoTime();
            long sent = 0;
            while (sent < records) {
                long began = System.nanoTime();
                if (txn) {
                    p.beginTransaction();
                }
                long inTxn = 0;
                while (sent < records) {
                    if (rate > 0) {
                        long due = t0 + (long) (sent * 1e9 / rate);
                        long wait = due - System.nanoTime();
                        if (wait > 0) {
                            Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                        }
                    }
                    p.send(new ProducerRecord<>(topic, null, value));
                    sent++;
                    inTxn++;
                    if (perTxn > 0 && inTxn >= perTxn) {
                        break;
                    }
                    if (txnMs > 0 && System.nanoTime() - began >= txnMs * 1_000_000) {
                        break;
                    }
                }
                if (txn) {
                    p.flush();
                    long c0 = System.nanoTime();
                    p.commitTransaction();
                    commits.add(System.nanoTime() - c0);
                    txns++;
                }
            }
            p.flush();
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (consumed.get() < records && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        stop.set(true);
        reader.join();
        long got = consumed.get();
        long[] lat = Arrays.copyOf(e2e, (int) Math.min(got, records));
        Arrays.sort(lat);
        long[] cs = commits.stream().mapToLong(Long::longValue).sorted().toArray();
        System.out.printf("RESULT mode=%s records=%d record_size=%d partitions=%d rate=%.0f seconds=%.2f "
                + "records_per_s=%.0f mb_per_s=%.2f txns=%d commit_p50_ms=%.2f commit_p99_ms=%.2f "
                + "e2e_p50_ms=%d e2e_p99_ms=%d consumed=%d%n",
            mode, records, size, partitions, rate, secs, records / secs, records * (double) size / secs / 1e6,
            txns, q(cs, 0.5) / 1e6, q(cs, 0.99) / 1e6, q(lat, 0.5), q(lat, 0.99), got);
        if (got != records) {
            System.err.println("FAIL the read_committed consumer read " + got + " of " + records + " records");
            System.exit(1);
        }
    }

    static void catchUp(String bootstrap, String topic, int partitions, long records) throws Exception {
        AtomicLong consumed = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        long t0 = System.nanoTime();
        Thread reader = new Thread(() -> consume(bootstrap, topic, partitions, new long[0], consumed, stop));
        reader.start();
        long deadline = t0 + 300_000_000_000L;
        while (consumed.get() < records && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        stop.set(true);
        reader.join();
        System.out.printf("RESULT read records=%d seconds=%.2f%n", consumed.get(), (System.nanoTime() - t0) / 1e9);
        if (consumed.get() != records) {
            System.err.println("FAIL the catch-up read got " + consumed.get() + " of " + records + " records");
            System.exit(1);
        }
    }

    static long q(long[] sorted, double f) {
        return sorted.length == 0 ? -1 : sorted[(int) (f * (sorted.length - 1))];
    }

    static void createTopic(String bootstrap, String topic, int partitions) throws Exception {
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
    }

    static Properties producerProps(String bootstrap, String txnId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, 262144);
        if (txnId != null) {
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        }
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return p;
    }

    static void consume(String bootstrap, String topic, int partitions, long[] e2e, AtomicLong consumed,
                        AtomicBoolean stop) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            while (!stop.get()) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                    long n = consumed.getAndIncrement();
                    if (n < e2e.length) {
                        e2e[(int) n] = System.currentTimeMillis() - r.timestamp();
                    }
                }
            }
        }
    }
}
