package io.inkless.clients;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.source.ExactlyOnceSupport;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * A Kafka Connect source connector for integration/tests_py/test_connect_streams.py, as
 * Kafka's FileStreamSource (whose jar Maven Central lacks for 4.4.0): copies the complete
 * lines of a file into a topic, one record per line (no key), with the byte position after
 * each line as the source offset {"position": N} of source partition {"file": PATH}. A task
 * starts from its stored offset, so a restarted worker copies each line once. Configs: file,
 * topic. Found by the worker through META-INF/services (plugin.discovery=service_load).
 * It declares exactly-once support: its offsets say exactly which lines a record batch
 * holds, so a worker with exactly.once.source.support=enabled (test_connect_eos.py), which
 * commits records and offsets in one transaction, copies each line once even after a crash.
 */
public final class LineSourceConnector extends SourceConnector {
    static final ConfigDef CONFIG = new ConfigDef()
        .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "file to copy")
        .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "topic to copy it to");

    private Map<String, String> props;

    @Override
    public String version() {
        return "1";
    }

    @Override
    public void start(Map<String, String> props) {
        this.props = props;
    }

    @Override
    public ExactlyOnceSupport exactlyOnceSupport(Map<String, String> props) {
        return ExactlyOnceSupport.SUPPORTED;
    }

    @Override
    public Class<? extends Task> taskClass() {
        return LineSourceTask.class;
    }

    @Override
    public List<Map<String, String>> taskConfigs(int maxTasks) {
        return List.of(props);
    }

    @Override
    public void stop() {}

    @Override
    public ConfigDef config() {
        return CONFIG;
    }

    /** The one task: reads lines from its position on. */
    public static final class LineSourceTask extends SourceTask {
        private Map<String, String> partition;
        private String file;
        private String topic;
        private long position;

        @Override
        public String version() {
            return "1";
        }

        @Override
        public void start(Map<String, String> props) {
            file = props.get("file");
            topic = props.get("topic");
            partition = Map.of("file", file);
            Map<String, Object> stored = context.offsetStorageReader().offset(partition);
            position = stored == null ? 0 : ((Number) stored.get("position")).longValue();
        }

        @Override
        public List<SourceRecord> poll() throws InterruptedException {
            List<SourceRecord> out = new ArrayList<>();
            try (RandomAccessFile f = new RandomAccessFile(file, "r")) {
                f.seek(position);
                byte[] rest = new byte[(int) Math.min(f.length() - position, 1 << 20)];
                f.readFully(rest);
                int start = 0;
                for (int i = 0; i < rest.length; i++) {
                    if (rest[i] == '\n') {
                        String line = new String(rest, start, i - start, StandardCharsets.UTF_8);
                        position += i + 1 - start;
                        start = i + 1;
                        out.add(new SourceRecord(partition, Map.of("position", position), topic, null,
                            null, null, Schema.STRING_SCHEMA, line));
                    }
                }
            } catch (IOException e) {
                throw new ConnectException("reading " + file, e);
            }
            if (out.isEmpty()) {
                Thread.sleep(100);
                return null;
            }
            return out;
        }

        @Override
        public void stop() {}
    }
}
