// Command franz-client runs the client scenario (../SCENARIO.md) with franz-go.
//
//	franz-client BOOTSTRAP TOPIC PARTITIONS COUNT
//
// Producer: franz-go defaults (idempotent, acks=all) with a manual
// partitioner; SCENARIO_COMPRESSION picks the codec (unset: franz-go's
// default). Consumer: kgo.ConsumePartitions from the start, no group.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	client = "franz-go"
	filler = "abcdefghijklmnopqrstuvwxyz0123456789"
)

type scenarioError struct{ msg string }

func (e *scenarioError) Error() string { return e.msg }

type args struct {
	bootstrap   string
	topic       string
	partitions  int
	count       int
	mode        string
	create      bool
	baseTs      int64
	compression string
	timeout     time.Duration
}

func (a *args) fail(format string, v ...any) error {
	return &scenarioError{fmt.Sprintf("%s: topic %s: %s", client, a.topic, fmt.Sprintf(format, v...))}
}

func getenv(k, d string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return d
}

func parseArgs() (*args, error) {
	if len(os.Args) != 5 {
		return nil, errors.New("usage: franz-client BOOTSTRAP TOPIC PARTITIONS COUNT (see SCENARIO.md)")
	}
	p, err := strconv.Atoi(os.Args[3])
	if err != nil || p < 1 {
		return nil, fmt.Errorf("bad PARTITIONS %q", os.Args[3])
	}
	n, err := strconv.Atoi(os.Args[4])
	if err != nil || n < 0 {
		return nil, fmt.Errorf("bad COUNT %q", os.Args[4])
	}
	a := &args{
		bootstrap:   os.Args[1],
		topic:       os.Args[2],
		partitions:  p,
		count:       n,
		mode:        getenv("SCENARIO_MODE", "all"),
		create:      getenv("SCENARIO_CREATE", "1") != "0",
		compression: getenv("SCENARIO_COMPRESSION", ""),
	}
	switch a.mode {
	case "all", "produce", "consume":
	default:
		return nil, fmt.Errorf("bad SCENARIO_MODE %q", a.mode)
	}
	if b := getenv("SCENARIO_BASE_TS", ""); b != "" {
		if a.baseTs, err = strconv.ParseInt(b, 10, 64); err != nil {
			return nil, fmt.Errorf("bad SCENARIO_BASE_TS %q", b)
		}
	} else {
		a.baseTs = (time.Now().UnixMilli() - 600_000) / 1000 * 1000
	}
	secs, err := strconv.ParseFloat(getenv("SCENARIO_TIMEOUT", "120"), 64)
	if err != nil {
		return nil, fmt.Errorf("bad SCENARIO_TIMEOUT")
	}
	a.timeout = time.Duration(secs * float64(time.Second))
	return a, nil
}

// ---- the scenario's records ----

func keyOf(i int) []byte { return []byte(fmt.Sprintf("key-%06d", i)) }

func valueOf(i int) []byte {
	if i%50 == 49 {
		return nil
	}
	n := (i * 37) % 300
	var sb strings.Builder
	fmt.Fprintf(&sb, "value-%06d-", i)
	for k := 0; k < n; k++ {
		sb.WriteByte(filler[k%len(filler)])
	}
	return []byte(sb.String())
}

func headersOf(i int) []kgo.RecordHeader {
	h := []kgo.RecordHeader{
		{Key: "idx", Value: []byte(strconv.Itoa(i))},
		{Key: "src", Value: []byte("inkless-test")},
		{Key: "dup", Value: []byte("1")},
		{Key: "dup", Value: []byte("2")},
	}
	if i%3 == 0 {
		h = append(h, kgo.RecordHeader{Key: "empty", Value: []byte{}})
	}
	return h
}

func (a *args) expectedPerPartition() []int64 {
	e := make([]int64, a.partitions)
	for i := 0; i < a.count; i++ {
		e[i%a.partitions]++
	}
	return e
}

func showBytes(b []byte) string {
	if b == nil {
		return "null"
	}
	s := string(b)
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}

func showHeaders(hs []kgo.RecordHeader) string {
	parts := make([]string, len(hs))
	for k, h := range hs {
		parts[k] = fmt.Sprintf("(%s, %s)", h.Key, showBytes(h.Value))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// ---- admin ----

func (a *args) newClient(opts ...kgo.Opt) (*kgo.Client, error) {
	// A short metadata min age: right after CreateTopics a partition may
	// briefly report NOT_LEADER, and the default 5 s refresh floor would
	// stall the run.
	base := []kgo.Opt{kgo.SeedBrokers(a.bootstrap), kgo.MetadataMinAge(250 * time.Millisecond)}
	return kgo.NewClient(append(base, opts...)...)
}

func (a *args) waitTopic(ctx context.Context, adm *kadm.Client) error {
	deadline := time.Now().Add(a.timeout)
	last := ""
	for time.Now().Before(deadline) {
		tds, err := adm.ListTopics(ctx, a.topic)
		if err != nil {
			last = err.Error()
		} else if td, ok := tds[a.topic]; !ok {
			last = "absent"
		} else if td.Err != nil {
			last = td.Err.Error()
		} else if len(td.Partitions) != a.partitions {
			last = fmt.Sprintf("%d partitions", len(td.Partitions))
		} else {
			ready := true
			for _, p := range td.Partitions {
				if p.Leader < 0 || p.Err != nil {
					ready = false
				}
			}
			if ready {
				return nil
			}
			last = "partitions without leader"
		}
		time.Sleep(200 * time.Millisecond)
	}
	return a.fail("not ready with %d partitions after %s (last: %s)", a.partitions, a.timeout, last)
}

func (a *args) createTopic(ctx context.Context) error {
	cl, err := a.newClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resps, err := adm.CreateTopics(ctx, int32(a.partitions), 1, nil, a.topic)
	if err != nil {
		return fmt.Errorf("CreateTopics: %w", err)
	}
	if r, ok := resps[a.topic]; !ok {
		return a.fail("CreateTopics: no response for topic")
	} else if r.Err != nil {
		return a.fail("CreateTopics: %v %s", r.Err, r.ErrMessage)
	}
	return a.waitTopic(ctx, adm)
}

// ---- produce ----

func (a *args) produce(ctx context.Context) error {
	opts := []kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5 * time.Millisecond),
		// No RecordDeliveryTimeout: franz-go measures it from Record.Timestamp,
		// which the scenario sets 10 minutes in the past.
	}
	switch a.compression {
	case "":
	case "none":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression()))
	case "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	default:
		return fmt.Errorf("bad SCENARIO_COMPRESSION %q", a.compression)
	}
	cl, err := a.newClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := a.waitTopic(ctx, kadm.NewClient(cl)); err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		failures []string
		ok       int
	)
	for i := 0; i < a.count; i++ {
		i := i
		rec := &kgo.Record{
			Topic:     a.topic,
			Partition: int32(i % a.partitions),
			Key:       keyOf(i),
			Value:     valueOf(i),
			Timestamp: time.UnixMilli(a.baseTs + int64(i)),
			Headers:   headersOf(i),
		}
		cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failures = append(failures, fmt.Sprintf("record %d: delivery failed: %v", i, err))
			case r.Partition != int32(i%a.partitions):
				failures = append(failures, fmt.Sprintf("record %d: delivered to partition %d", i, r.Partition))
			default:
				ok++
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		return a.fail("%d delivery failures, first: %s", len(failures), failures[0])
	}
	if ok != a.count {
		return a.fail("%d delivered, expected %d", ok, a.count)
	}
	return nil
}

// ---- consume ----

func (a *args) consume(ctx context.Context) error {
	offsets := map[int32]kgo.Offset{}
	for p := 0; p < a.partitions; p++ {
		offsets[int32(p)] = kgo.NewOffset().AtStart()
	}
	cl, err := a.newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{a.topic: offsets}),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := a.waitTopic(ctx, adm); err != nil {
		return err
	}
	expected := a.expectedPerPartition()
	ends, err := adm.ListEndOffsets(ctx, a.topic)
	if err != nil {
		return fmt.Errorf("ListEndOffsets: %w", err)
	}
	for p := 0; p < a.partitions; p++ {
		lo, ok := ends.Lookup(a.topic, int32(p))
		if !ok {
			return a.fail("partition %d: no end offset", p)
		}
		if lo.Err != nil {
			return a.fail("partition %d: end offset error %v", p, lo.Err)
		}
		if lo.Offset != expected[p] {
			return a.fail("partition %d: end offset %d, expected %d", p, lo.Offset, expected[p])
		}
	}

	next := make([]int64, a.partitions)
	total := 0
	deadline := time.Now().Add(a.timeout)
	for total < a.count {
		if time.Now().After(deadline) {
			return a.fail("timed out after %s with %d/%d records; per partition %v", a.timeout, total, a.count, next)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pctx)
		cancel()
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			return fmt.Errorf("fetch error on %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		var verr error
		fetches.EachRecord(func(r *kgo.Record) {
			if verr != nil {
				return
			}
			q := int(r.Partition)
			if q < 0 || q >= a.partitions {
				verr = a.fail("record from unexpected partition %d", q)
				return
			}
			j := next[q]
			where := fmt.Sprintf("partition %d offset %d", q, r.Offset)
			if r.Offset != j {
				verr = a.fail("partition %d: expected offset %d, got %d (gap, duplicate or reordering)", q, j, r.Offset)
				return
			}
			i := q + int(j)*a.partitions
			if i >= a.count {
				verr = a.fail("%s: extra record (only %d produced)", where, a.count)
				return
			}
			if !bytes.Equal(r.Key, keyOf(i)) {
				verr = a.fail("%s: key %s, expected %s", where, showBytes(r.Key), showBytes(keyOf(i)))
				return
			}
			want := valueOf(i)
			if (want == nil) != (r.Value == nil) || !bytes.Equal(r.Value, want) {
				verr = a.fail("%s (record %d): value %s, expected %s", where, i, showBytes(r.Value), showBytes(want))
				return
			}
			if r.Attrs.TimestampType() != 0 || r.Timestamp.UnixMilli() != a.baseTs+int64(i) {
				verr = a.fail("%s (record %d): timestamp type %d %d, expected CreateTime %d", where, i,
					r.Attrs.TimestampType(), r.Timestamp.UnixMilli(), a.baseTs+int64(i))
				return
			}
			wantH := headersOf(i)
			same := len(r.Headers) == len(wantH)
			for k := 0; same && k < len(wantH); k++ {
				same = r.Headers[k].Key == wantH[k].Key && bytes.Equal(r.Headers[k].Value, wantH[k].Value) &&
					r.Headers[k].Value != nil
			}
			if !same {
				verr = a.fail("%s (record %d): headers %s, expected %s", where, i, showHeaders(r.Headers), showHeaders(wantH))
				return
			}
			next[q] = j + 1
			total++
		})
		if verr != nil {
			return verr
		}
	}
	for p := 0; p < a.partitions; p++ {
		if next[p] != expected[p] {
			return a.fail("partition %d: consumed %d, expected %d", p, next[p], expected[p])
		}
	}
	return nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "group-member" {
		os.Exit(groupMember(os.Args[2:])) // group.go
	}
	if len(os.Args) > 1 && os.Args[1] == "many-producers" {
		os.Exit(manyProducers(os.Args[2:])) // many.go
	}
	if len(os.Args) > 1 && os.Args[1] == "txn" {
		os.Exit(txnMain(os.Args[2:])) // txn.go
	}
	if len(os.Args) > 1 && os.Args[1] == "fill" {
		os.Exit(fillMain(os.Args[2:])) // fill.go
	}
	start := time.Now()
	a, err := parseArgs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*a.timeout+30*time.Second)
	defer cancel()
	run := func() error {
		if a.mode != "consume" {
			if a.create {
				if err := a.createTopic(ctx); err != nil {
					return err
				}
			}
			if err := a.produce(ctx); err != nil {
				return err
			}
		}
		if a.mode != "produce" {
			return a.consume(ctx)
		}
		return nil
	}
	if err := run(); err != nil {
		var se *scenarioError
		if errors.As(err, &se) {
			fmt.Fprintf(os.Stderr, "FAIL %s\n", se.msg)
		} else {
			fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", client, err)
		}
		os.Exit(1)
	}
	fmt.Printf("OK %s %s %d records in %.1fs\n", client, a.mode, a.count, time.Since(start).Seconds())
}
