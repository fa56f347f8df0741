// One record to every partition of many topics, then every partition read from its
// start, for scripts/bench/placement.py (franz-go puts all the partitions a broker leads
// into one Produce request; librdkafka sends one request per partition):
//
//	franz-client fill BOOTSTRAP TIMEOUT_SECONDS TOPIC:PARTITIONS...
//
// Prints "PRODUCED <n> <seconds>" once every record is acknowledged (franz-go's defaults:
// idempotent, acks=all) and "FETCHED <n> <seconds>" once every partition gave its record
// (kgo.ConsumePartitions from offset 0, no group). Exit status 1 with the first error, or
// when TIMEOUT_SECONDS pass first.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func fillMain(argv []string) int {
	if len(argv) < 3 {
		fmt.Fprintln(os.Stderr, "usage: franz-client fill BOOTSTRAP TIMEOUT_SECONDS TOPIC:PARTITIONS...")
		return 2
	}
	seconds, err := strconv.Atoi(argv[1])
	if err != nil || seconds < 1 {
		fmt.Fprintf(os.Stderr, "bad TIMEOUT_SECONDS %q\n", argv[1])
		return 2
	}
	topics := map[string]int32{}
	total := 0
	for _, spec := range argv[2:] {
		name, count, ok := strings.Cut(spec, ":")
		n, err := strconv.Atoi(count)
		if !ok || err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bad TOPIC:PARTITIONS %q\n", spec)
			return 2
		}
		topics[name] = int32(n)
		total += n
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
	defer cancel()
	if err := fillProduce(ctx, argv[0], topics, total); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL produce: %v\n", err)
		return 1
	}
	if err := fillFetch(ctx, argv[0], topics, total); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL fetch: %v\n", err)
		return 1
	}
	return 0
}

func fillProduce(ctx context.Context, bootstrap string, topics map[string]int32, total int) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(50*time.Millisecond),
		kgo.MaxBufferedRecords(total+1000),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	start := time.Now()
	var acked atomic.Int64
	var firstErr error
	var mu sync.Mutex
	for name, partitions := range topics {
		for p := int32(0); p < partitions; p++ {
			r := &kgo.Record{Topic: name, Partition: p, Value: []byte("x")}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				acked.Add(1)
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("%d of %d acknowledged: %w", acked.Load(), total, err)
	}
	if firstErr != nil {
		return fmt.Errorf("%d of %d acknowledged: %w", acked.Load(), total, firstErr)
	}
	fmt.Printf("PRODUCED %d %.2f\n", total, time.Since(start).Seconds())
	return nil
}

func fillFetch(ctx context.Context, bootstrap string, topics map[string]int32, total int) error {
	wanted := map[string]map[int32]kgo.Offset{}
	for name, partitions := range topics {
		wanted[name] = map[int32]kgo.Offset{}
		for p := int32(0); p < partitions; p++ {
			wanted[name][p] = kgo.NewOffset().At(0)
		}
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ConsumePartitions(wanted),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	start := time.Now()
	type tp struct {
		topic     string
		partition int32
	}
	seen := map[tp]bool{}
	for len(seen) < total {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d partitions read: %w", len(seen), total, ctx.Err())
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return fmt.Errorf("%s/%d: %w", errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		fetches.EachRecord(func(r *kgo.Record) { seen[tp{r.Topic, r.Partition}] = true })
	}
	fmt.Printf("FETCHED %d %.2f\n", total, time.Since(start).Seconds())
	return nil
}
