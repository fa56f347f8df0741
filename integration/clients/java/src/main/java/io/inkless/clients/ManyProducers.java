package io.inkless.clients;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Many idempotent producers on one partition, for integration/tests_py/test_many_producers.py.
 *
 * <pre>
 * produce BOOTSTRAP TOPIC PARTITION PRODUCERS RECORDS PREFIX
 *     PRODUCERS KafkaProducers (idempotent, acks=all, linger 5 ms) each send RECORDS records
 *     "PREFIX-producer:seq" to PARTITION at once; one line per producer:
 *     PRODUCER PREFIX-i acked N errors E first-error "..." (an acknowledgement whose offset is
 *     not above the producer's previous one counts as an error); exit 1 on any error
 * describe BOOTSTRAP TOPIC PARTITION
 *     the partition's active producers (DescribeProducers): ACTIVE_PRODUCERS n
 * </pre>
 */
public final class ManyProducers {
    private ManyProducers() {}

    /** What one producer saw. */
    private static final class Result {
        final String name;
        int acked;
        int errors;
        long lastOffset = -1;
        String firstError = "";

        Result(String name) {
            this.name = name;
        }

        synchronized void ack(long offset, Exception e) {
            if (e != null) {
                fail(e.toString());
            } else if (offset <= lastOffset) {
                fail("offset " + offset + " after " + lastOffset);
            } else {
                lastOffset = offset;
                acked++;
            }
        }

        synchronized void fail(String msg) {
            errors++;
            if (firstError.isEmpty()) {
                firstError = msg;
            }
        }
    }

    private static Result produceOne(String bootstrap, String topic, int partition, int records, String name) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        Result r = new Result(name);
        try (KafkaProducer<String, String> producer =
                new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int seq = 0; seq < records; seq++) {
                producer.send(new ProducerRecord<>(topic, partition, null, name + ":" + seq),
                        (md, e) -> r.ack(md == null ? -1 : md.offset(), e));
            }
            producer.flush();
        } catch (RuntimeException e) {
            r.fail(e.toString());
        }
        return r;
    }

    private static int produce(String[] a) throws Exception {
        int partition = Integer.parseInt(a[2]);
        int producers = Integer.parseInt(a[3]);
        int records = Integer.parseInt(a[4]);
        ExecutorService pool = Executors.newFixedThreadPool(producers);
        List<Future<Result>> futures = new ArrayList<>();
        for (int i = 0; i < producers; i++) {
            String name = a[5] + "-" + i;
            futures.add(pool.submit(() -> produceOne(a[0], a[1], partition, records, name)));
        }
        int failed = 0;
        for (Future<Result> f : futures) {
            Result r = f.get(5, TimeUnit.MINUTES);
            System.out.printf("PRODUCER %s acked %d errors %d first-error \"%s\"%n", r.name, r.acked, r.errors,
                    r.firstError.replace('"', '\''));
            failed += r.errors > 0 ? 1 : 0;
        }
        pool.shutdown();
        return failed > 0 ? 1 : 0;
    }

    private static int describe(String[] a) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a[0]);
        TopicPartition tp = new TopicPartition(a[1], Integer.parseInt(a[2]));
        try (Admin admin = Admin.create(p)) {
            Map<TopicPartition, org.apache.kafka.clients.admin.DescribeProducersResult.PartitionProducerState> all =
                    admin.describeProducers(List.of(tp)).all().get(60, TimeUnit.SECONDS);
            List<ProducerState> active = all.get(tp).activeProducers();
            System.out.printf("ACTIVE_PRODUCERS %d%n", active.size());
        }
        return 0;
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length == 7 && argv[0].equals("produce")) {
            System.exit(produce(java.util.Arrays.copyOfRange(argv, 1, argv.length)));
        } else if (argv.length == 4 && argv[0].equals("describe")) {
            System.exit(describe(java.util.Arrays.copyOfRange(argv, 1, argv.length)));
        }
        System.err.println("usage: ManyProducers produce BOOTSTRAP TOPIC PARTITION PRODUCERS RECORDS PREFIX"
                + " | describe BOOTSTRAP TOPIC PARTITION");
        System.exit(2);
    }
}
