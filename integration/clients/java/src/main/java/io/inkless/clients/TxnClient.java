package io.inkless.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Transactional producer and read_committed consumer scenarios for the transaction tests
 * (integration/tests_py/test_transactions.py). Every command prints its results as lines on
 * stdout; a failure prints "FAIL ..." on stderr and exits 1.
 *
 * <pre>
 * produce BOOTSTRAP TOPIC TXN_ID TXNS PER_TXN   every third transaction aborts; prints COMMITTED v
 * consume BOOTSTRAP TOPIC ISOLATION             reads every partition to its end; prints REC p o v
 * fence BOOTSTRAP TOPIC TXN_ID                  a second producer fences the first; prints FENCED x
 * hang BOOTSTRAP TOPIC TXN_ID TIMEOUT_MS        begins, writes, flushes and halts without ending
 * ctp BOOTSTRAP IN OUT GROUP TXN_ID COUNT       consume-transform-produce with sendOffsetsToTransaction
 * held BOOTSTRAP TOPIC TXN_ID COUNT TAG         writes TAG-i to every partition in turn, flushes, prints
 *                                               SENT, then commits or aborts as its stdin says
 * </pre>
 */
public final class TxnClient {
    private TxnClient() {}

    static KafkaProducer<String, String> producer(String bootstrap, String txnId, int timeoutMs) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, timeoutMs);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60000);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(String bootstrap, String isolation, String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    static int partitions(String bootstrap, String topic) {
        try (KafkaConsumer<String, String> c = consumer(bootstrap, "read_uncommitted", null)) {
            List<PartitionInfo> info = c.partitionsFor(topic, Duration.ofSeconds(30));
            return info.size();
        }
    }

    static void produce(String[] a) {
        String bootstrap = a[1], topic = a[2], txnId = a[3];
        int txns = Integer.parseInt(a[4]), perTxn = Integer.parseInt(a[5]);
        int parts = partitions(bootstrap, topic);
        try (KafkaProducer<String, String> p = producer(bootstrap, txnId, 60000)) {
            p.initTransactions();
            for (int t = 0; t < txns; t++) {
                p.beginTransaction();
                List<String> values = new ArrayList<>();
                for (int i = 0; i < perTxn; i++) {
                    String v = "t" + t + "-" + i;
                    p.send(new ProducerRecord<>(topic, i % parts, "k" + i, v));
                    values.add(v);
                }
                if (t % 3 == 2) {
                    // Flushed first, so that the aborted records reach the log (and the
                    // read_committed consumer must skip them).
                    p.flush();
                    p.abortTransaction();
                    System.out.println("ABORTED " + t);
                } else {
                    p.commitTransaction();
                    for (String v : values) {
                        System.out.println("COMMITTED " + v);
                    }
                }
            }
        }
        System.out.println("DONE");
    }

    static void consume(String[] a) {
        String bootstrap = a[1], topic = a[2], isolation = a[3];
        try (KafkaConsumer<String, String> c = consumer(bootstrap, isolation, null)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            // endOffsets honours the isolation level: the last stable offset for read_committed.
            Map<TopicPartition, Long> end = c.endOffsets(tps, Duration.ofSeconds(30));
            long deadline = System.currentTimeMillis() + 60000;
            while (System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : recs) {
                    System.out.println("REC " + r.partition() + " " + r.offset() + " " + r.value());
                }
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (c.position(tp) < end.get(tp)) {
                        done = false;
                    }
                }
                if (done) {
                    for (TopicPartition tp : tps) {
                        System.out.println("END " + tp.partition() + " " + end.get(tp));
                    }
                    return;
                }
            }
            fail("consumer did not reach the end offsets " + end);
        }
    }

    static void fence(String[] a) {
        String bootstrap = a[1], topic = a[2], txnId = a[3];
        KafkaProducer<String, String> zombie = producer(bootstrap, txnId, 60000);
        zombie.initTransactions();
        zombie.beginTransaction();
        zombie.send(new ProducerRecord<>(topic, 0, "k", "zombie"));
        zombie.flush();
        try (KafkaProducer<String, String> fresh = producer(bootstrap, txnId, 60000)) {
            fresh.initTransactions();
            try {
                zombie.send(new ProducerRecord<>(topic, 0, "k", "zombie-2"));
                zombie.commitTransaction();
                fail("the zombie committed after being fenced");
            } catch (KafkaException e) {
                System.out.println("FENCED " + e.getClass().getSimpleName());
            }
            zombie.close(Duration.ZERO);
            fresh.beginTransaction();
            fresh.send(new ProducerRecord<>(topic, 0, "k", "fresh"));
            fresh.commitTransaction();
            System.out.println("FRESH COMMITTED");
        }
    }

    static void hang(String[] a) {
        String bootstrap = a[1], topic = a[2], txnId = a[3];
        int timeout = Integer.parseInt(a[4]);
        KafkaProducer<String, String> p = producer(bootstrap, txnId, timeout);
        p.initTransactions();
        p.beginTransaction();
        p.send(new ProducerRecord<>(topic, 0, "k", "hung"));
        p.flush();
        System.out.println("HUNG");
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }

    static void ctp(String[] a) {
        String bootstrap = a[1], in = a[2], out = a[3], group = a[4], txnId = a[5];
        int count = Integer.parseInt(a[6]);
        int done = 0;
        try (KafkaConsumer<String, String> c = consumer(bootstrap, "read_committed", group);
             KafkaProducer<String, String> p = producer(bootstrap, txnId, 60000)) {
            p.initTransactions();
            c.subscribe(Collections.singletonList(in));
            long deadline = System.currentTimeMillis() + 90000;
            while (done < count && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(200));
                if (recs.isEmpty()) {
                    continue;
                }
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : recs) {
                    p.send(new ProducerRecord<>(out, r.partition(), r.key(), r.value().toUpperCase()));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    done++;
                }
                p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                p.commitTransaction();
            }
        }
        if (done < count) {
            fail("processed " + done + " of " + count);
        }
        System.out.println("PROCESSED " + done);
    }

    static void held(String[] a) throws java.io.IOException {
        String bootstrap = a[1], topic = a[2], txnId = a[3], tag = a[5];
        int count = Integer.parseInt(a[4]);
        int parts = partitions(bootstrap, topic);
        try (KafkaProducer<String, String> p = producer(bootstrap, txnId, 60000)) {
            p.initTransactions();
            p.beginTransaction();
            for (int i = 0; i < count; i++) {
                p.send(new ProducerRecord<>(topic, i % parts, "k" + i, tag + "-" + i));
            }
            p.flush();
            System.out.println("SENT");
            System.out.flush();
            String what = new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine();
            if ("commit".equals(what)) {
                p.commitTransaction();
            } else {
                p.abortTransaction();
            }
            System.out.println("DONE " + what);
        }
    }

    static void fail(String msg) {
        System.err.println("FAIL " + msg);
        System.exit(1);
    }

    public static void main(String[] a) {
        try {
            switch (a[0]) {
                case "produce" -> produce(a);
                case "consume" -> consume(a);
                case "fence" -> fence(a);
                case "hang" -> hang(a);
                case "ctp" -> ctp(a);
                case "held" -> held(a);
                default -> fail("unknown command " + a[0]);
            }
        } catch (Exception e) {
            e.printStackTrace();
            fail(e.toString());
        }
        System.exit(0);
    }
}
