package io.inkless.clients;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsSpec;
import org.apache.kafka.clients.admin.ListConsumerGroupsOptions;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Consumer-group programs for integration/tests_py/test_groups.py (see integration/clients/GROUPS.md).
 *
 * <pre>
 *   java -cp inkless-java-client.jar io.inkless.clients.GroupClient member BOOTSTRAP TOPIC GROUP NAME
 *   java -cp inkless-java-client.jar io.inkless.clients.GroupClient admin BOOTSTRAP
 * </pre>
 *
 * <p>{@code member}: one group member that subscribes to TOPIC and logs its assignment events and
 * every consumed record on stdout (the event log of GROUPS.md), auto-committing. SIGTERM: stop
 * consuming, close (commit + leave), exit 0. Env: GROUP_PROTOCOL (classic|consumer),
 * GROUP_ASSIGNOR (range|roundrobin|sticky|cooperative-sticky; classic only),
 * GROUP_REMOTE_ASSIGNOR (consumer protocol; default: the broker's), GROUP_SESSION_TIMEOUT_MS,
 * GROUP_HEARTBEAT_INTERVAL_MS (classic only), GROUP_INSTANCE_ID.
 *
 * <p>{@code admin}: reads one command per stdin line, runs it with the Admin client and prints
 * one line of JSON per command (what kafka-consumer-groups.sh does):
 *
 * <pre>
 *   list [STATE,...]                 listConsumerGroups (inStates filter when given)
 *   describe GROUP [GROUP...]        describeConsumerGroups
 *   offsets GROUP                    listConsumerGroupOffsets
 *   alter GROUP TOPIC P:OFF[,P:OFF]  alterConsumerGroupOffsets
 *   delete-offsets GROUP TOPIC P[,P] deleteConsumerGroupOffsets
 *   delete GROUP [GROUP...]          deleteConsumerGroups
 * </pre>
 *
 * Each answer is {"ok": RESULT} or {"error": "ExceptionSimpleName", "message": "..."}; for
 * per-group commands the RESULT maps each group to its own {"ok"|"error"} entry.
 */
public final class GroupClient {
    private GroupClient() {}

    static volatile int memberRc = 1;

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    static void out(String line) {
        synchronized (System.out) {
            System.out.println(line);
            System.out.flush();
        }
    }

    static String parts(Collection<TopicPartition> tps) {
        if (tps.isEmpty()) {
            return "-";
        }
        TreeSet<Integer> s = new TreeSet<>();
        for (TopicPartition tp : tps) {
            s.add(tp.partition());
        }
        StringBuilder sb = new StringBuilder();
        for (int p : s) {
            if (sb.length() > 0) {
                sb.append(',');
            }
            sb.append(p);
        }
        return sb.toString();
    }

    static long now() {
        return System.currentTimeMillis();
    }

    // ---------------------------------------------------------------- member

    static int member(String[] argv) throws Exception {
        if (argv.length != 5) {
            System.err.println("usage: GroupClient member BOOTSTRAP TOPIC GROUP NAME");
            return 2;
        }
        String bootstrap = argv[1];
        String topic = argv[2];
        String group = argv[3];
        String name = argv[4];
        String protocol = env("GROUP_PROTOCOL", "classic");

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "true");
        p.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, "1000");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "200");
        String instance = env("GROUP_INSTANCE_ID", "");
        if (!instance.isEmpty()) {
            p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance);
        }
        if (protocol.equals("classic")) {
            String assignor = env("GROUP_ASSIGNOR", "range");
            String cls = switch (assignor) {
                case "range" -> "org.apache.kafka.clients.consumer.RangeAssignor";
                case "roundrobin" -> "org.apache.kafka.clients.consumer.RoundRobinAssignor";
                case "sticky" -> "org.apache.kafka.clients.consumer.StickyAssignor";
                case "cooperative-sticky" -> "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
                default -> throw new IllegalArgumentException("bad GROUP_ASSIGNOR " + assignor);
            };
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls);
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, env("GROUP_SESSION_TIMEOUT_MS", "6000"));
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, env("GROUP_HEARTBEAT_INTERVAL_MS", "1000"));
        } else {
            // KIP-848: session timeout and heartbeat interval are broker/group settings.
            String remote = env("GROUP_REMOTE_ASSIGNOR", "");
            if (!remote.isEmpty()) {
                p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, remote);
            }
        }

        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p);
        CountDownLatch done = new CountDownLatch(1);
        Thread mainThread = Thread.currentThread();
        final boolean[] stopping = {false};
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            synchronized (stopping) {
                stopping[0] = true;
            }
            consumer.wakeup();
            try {
                done.await(60, TimeUnit.SECONDS);
            } catch (InterruptedException ignored) {
                // exit anyway
            }
            // A JVM ending on SIGTERM exits 143 once its hooks are done; exit with the loop's status.
            Runtime.getRuntime().halt(memberRc);
        }));

        out("START " + now() + " " + name + " java/" + protocol + "/" + env("GROUP_ASSIGNOR", "-"));
        int rc = 0;
        try {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    if (!ps.isEmpty()) {
                        out("REVOKED " + now() + " " + parts(ps));
                    }
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                    out("ASSIGNED " + now() + " " + parts(ps));
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> ps) {
                    if (!ps.isEmpty()) {
                        out("LOST " + now() + " " + parts(ps));
                    }
                }
            });
            while (true) {
                synchronized (stopping) {
                    if (stopping[0]) {
                        break;
                    }
                }
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
                long t = now();
                StringBuilder sb = new StringBuilder();
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    String v = r.value() == null ? "" : new String(r.value(), StandardCharsets.UTF_8);
                    int colon = v.indexOf(':');
                    String seq = colon < 0 ? "-1" : v.substring(colon + 1);
                    sb.append("REC ").append(t).append(' ').append(r.partition()).append(' ')
                            .append(r.offset()).append(' ').append(seq).append('\n');
                }
                if (sb.length() > 0) {
                    sb.setLength(sb.length() - 1);
                    out(sb.toString());
                }
            }
        } catch (WakeupException e) {
            // SIGTERM
        } catch (Exception e) {
            e.printStackTrace();
            out("ERROR " + now() + " " + e.toString().replace('\n', ' '));
            rc = 1;
        }
        out("CLOSING " + now());
        try {
            consumer.close(); // auto-commit of the consumed positions, then LeaveGroup
        } catch (Exception e) {
            e.printStackTrace();
            out("ERROR " + now() + " close: " + e.toString().replace('\n', ' '));
            rc = 1;
        }
        out("CLOSED " + now());
        System.out.flush();
        memberRc = rc;
        done.countDown();
        return rc;
    }

    // ---------------------------------------------------------------- admin

    static String q(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }

    static String err(Throwable e) {
        Throwable c = e;
        while ((c instanceof ExecutionException || c instanceof java.util.concurrent.CompletionException) && c.getCause() != null) {
            c = c.getCause();
        }
        return "{\"error\":" + q(c.getClass().getSimpleName()) + ",\"message\":" + q(String.valueOf(c.getMessage())) + "}";
    }

    static String tpList(Collection<TopicPartition> tps) {
        List<String> items = new ArrayList<>();
        List<TopicPartition> sorted = new ArrayList<>(tps);
        sorted.sort((a, b) -> a.topic().equals(b.topic()) ? Integer.compare(a.partition(), b.partition()) : a.topic().compareTo(b.topic()));
        for (TopicPartition tp : sorted) {
            items.add("[" + q(tp.topic()) + "," + tp.partition() + "]");
        }
        return "[" + String.join(",", items) + "]";
    }

    static Map<Integer, Long> parseOffsets(String spec) {
        Map<Integer, Long> m = new TreeMap<>();
        for (String item : spec.split(",")) {
            String[] kv = item.split(":");
            m.put(Integer.parseInt(kv[0]), Long.parseLong(kv[1]));
        }
        return m;
    }

    static String adminCommand(Admin admin, String[] w) throws Exception {
        switch (w[0]) {
            case "list": {
                ListConsumerGroupsOptions opts = new ListConsumerGroupsOptions();
                if (w.length > 1) {
                    Set<GroupState> states = new HashSet<>();
                    for (String s : w[1].split(",")) {
                        states.add(GroupState.parse(s));
                    }
                    opts = opts.inGroupStates(states);
                }
                Collection<ConsumerGroupListing> ls = admin.listConsumerGroups(opts).all().get(30, TimeUnit.SECONDS);
                List<String> items = new ArrayList<>();
                for (ConsumerGroupListing l : ls) {
                    items.add("{\"group\":" + q(l.groupId()) + ",\"state\":" + q(l.groupState().map(Object::toString).orElse(null))
                            + ",\"type\":" + q(l.type().map(Object::toString).orElse(null)) + ",\"simple\":" + l.isSimpleConsumerGroup() + "}");
                }
                return "{\"ok\":[" + String.join(",", items) + "]}";
            }
            case "describe": {
                List<String> groups = List.of(w).subList(1, w.length);
                var res = admin.describeConsumerGroups(groups).describedGroups();
                List<String> items = new ArrayList<>();
                for (String g : groups) {
                    String v;
                    try {
                        ConsumerGroupDescription d = res.get(g).get(30, TimeUnit.SECONDS);
                        List<String> ms = new ArrayList<>();
                        for (MemberDescription m : d.members()) {
                            ms.add("{\"member_id\":" + q(m.consumerId()) + ",\"instance_id\":" + q(m.groupInstanceId().orElse(null))
                                    + ",\"client_id\":" + q(m.clientId()) + ",\"host\":" + q(m.host())
                                    + ",\"assignment\":" + tpList(m.assignment().topicPartitions()) + "}");
                        }
                        v = "{\"ok\":{\"group\":" + q(d.groupId()) + ",\"state\":" + q(d.groupState().toString())
                                + ",\"type\":" + q(d.type().toString()) + ",\"assignor\":" + q(d.partitionAssignor())
                                + ",\"simple\":" + d.isSimpleConsumerGroup()
                                + ",\"coordinator\":" + (d.coordinator() == null ? "null" : Integer.toString(d.coordinator().id()))
                                + ",\"members\":[" + String.join(",", ms) + "]}}";
                    } catch (Exception e) {
                        v = err(e);
                    }
                    items.add(q(g) + ":" + v);
                }
                return "{\"ok\":{" + String.join(",", items) + "}}";
            }
            case "offsets": {
                Map<TopicPartition, OffsetAndMetadata> m = admin.listConsumerGroupOffsets(w[1]).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
                List<String> items = new ArrayList<>();
                List<TopicPartition> keys = new ArrayList<>(m.keySet());
                keys.sort((a, b) -> a.topic().equals(b.topic()) ? Integer.compare(a.partition(), b.partition()) : a.topic().compareTo(b.topic()));
                for (TopicPartition tp : keys) {
                    OffsetAndMetadata o = m.get(tp);
                    items.add("{\"topic\":" + q(tp.topic()) + ",\"partition\":" + tp.partition() + ",\"offset\":"
                            + (o == null ? "null" : Long.toString(o.offset())) + ",\"metadata\":" + (o == null ? "null" : q(o.metadata()))
                            + ",\"leader_epoch\":" + (o == null ? "null" : o.leaderEpoch().map(Object::toString).orElse("null")) + "}");
                }
                return "{\"ok\":[" + String.join(",", items) + "]}";
            }
            case "alter": {
                Map<TopicPartition, OffsetAndMetadata> m = new HashMap<>();
                for (var e : parseOffsets(w[3]).entrySet()) {
                    m.put(new TopicPartition(w[2], e.getKey()), new OffsetAndMetadata(e.getValue(), "admin"));
                }
                var res = admin.alterConsumerGroupOffsets(w[1], m);
                List<String> items = new ArrayList<>();
                for (TopicPartition tp : new TreeMap<Integer, TopicPartition>(toIndex(m.keySet())).values()) {
                    try {
                        res.partitionResult(tp).get(30, TimeUnit.SECONDS);
                        items.add(q(Integer.toString(tp.partition())) + ":{\"ok\":null}");
                    } catch (Exception e) {
                        items.add(q(Integer.toString(tp.partition())) + ":" + err(e));
                    }
                }
                try {
                    res.all().get(30, TimeUnit.SECONDS);
                    return "{\"ok\":{" + String.join(",", items) + "}}";
                } catch (Exception e) {
                    String ex = err(e);
                    return ex.substring(0, ex.length() - 1) + ",\"partitions\":{" + String.join(",", items) + "}}";
                }
            }
            case "delete-offsets": {
                Set<TopicPartition> s = new HashSet<>();
                for (String item : w[3].split(",")) {
                    s.add(new TopicPartition(w[2], Integer.parseInt(item)));
                }
                var res = admin.deleteConsumerGroupOffsets(w[1], s);
                List<String> items = new ArrayList<>();
                for (TopicPartition tp : new TreeMap<Integer, TopicPartition>(toIndex(s)).values()) {
                    try {
                        res.partitionResult(tp).get(30, TimeUnit.SECONDS);
                        items.add(q(Integer.toString(tp.partition())) + ":{\"ok\":null}");
                    } catch (Exception e) {
                        items.add(q(Integer.toString(tp.partition())) + ":" + err(e));
                    }
                }
                try {
                    res.all().get(30, TimeUnit.SECONDS);
                    return "{\"ok\":{" + String.join(",", items) + "}}";
                } catch (Exception e) {
                    String ex = err(e);
                    return ex.substring(0, ex.length() - 1) + ",\"partitions\":{" + String.join(",", items) + "}}";
                }
            }
            case "delete": {
                List<String> groups = List.of(w).subList(1, w.length);
                var res = admin.deleteConsumerGroups(groups).deletedGroups();
                List<String> items = new ArrayList<>();
                for (String g : groups) {
                    try {
                        res.get(g).get(30, TimeUnit.SECONDS);
                        items.add(q(g) + ":{\"ok\":null}");
                    } catch (Exception e) {
                        items.add(q(g) + ":" + err(e));
                    }
                }
                return "{\"ok\":{" + String.join(",", items) + "}}";
            }
            default:
                return "{\"error\":\"BadCommand\",\"message\":" + q(String.join(" ", w)) + "}";
        }
    }

    static Map<Integer, TopicPartition> toIndex(Collection<TopicPartition> tps) {
        Map<Integer, TopicPartition> m = new TreeMap<>();
        for (TopicPartition tp : tps) {
            m.put(tp.partition(), tp);
        }
        return m;
    }

    static int admin(String[] argv) throws Exception {
        if (argv.length != 2) {
            System.err.println("usage: GroupClient admin BOOTSTRAP  (commands on stdin)");
            return 2;
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, argv[1]);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(p);
             BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            out("READY");
            String line;
            while ((line = in.readLine()) != null) {
                line = line.trim();
                if (line.isEmpty()) {
                    continue;
                }
                if (line.equals("quit")) {
                    break;
                }
                String answer;
                try {
                    answer = adminCommand(admin, line.split("\\s+"));
                } catch (Exception e) {
                    answer = err(e);
                }
                out(answer);
            }
        }
        return 0;
    }

    // ---------------------------------------------------------------- async-commit

    /**
     * Reads partition 0 of TOPIC from the start to its end (COUNT records), committing each
     * record's next offset with commitAsync as it goes, then closes (close() finishes the
     * commits in flight). Prints "LAST <offset committed last>".
     */
    static int asyncCommit(String[] argv) {
        if (argv.length != 5) {
            System.err.println("usage: GroupClient async-commit BOOTSTRAP TOPIC GROUP COUNT");
            return 2;
        }
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, argv[1]);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, argv[3]);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        long count = Long.parseLong(argv[4]);
        TopicPartition tp = new TopicPartition(argv[2], 0);
        long next = 0;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.assign(List.of(tp));
            long deadline = now() + 60_000;
            while (next < count && now() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    next = r.offset() + 1;
                    c.commitAsync(Map.of(tp, new OffsetAndMetadata(next)), null);
                }
            }
        }
        out("LAST " + next);
        return next == count ? 0 : 1;
    }

    public static void main(String[] argv) {
        int rc;
        try {
            if (argv.length >= 1 && argv[0].equals("member")) {
                rc = member(argv);
            } else if (argv.length >= 1 && argv[0].equals("admin")) {
                rc = admin(argv);
            } else if (argv.length >= 1 && argv[0].equals("async-commit")) {
                rc = asyncCommit(argv);
            } else {
                System.err.println("usage: GroupClient member|admin|async-commit ...");
                rc = 2;
            }
        } catch (Exception e) {
            e.printStackTrace();
            rc = 1;
        }
        System.out.flush();
        // halt, not exit: exit would run the shutdown hook, which waits for the member loop.
        Runtime.getRuntime().halt(rc);
    }

}
