// Many idempotent producers writing to one partition at once, for
// integration/tests_py/test_many_producers.py:
//
//	franz-client many-producers BOOTSTRAP TOPIC PARTITION PRODUCERS RECORDS PREFIX
//
// PRODUCERS clients (each its own producer id; franz-go's defaults: idempotent, acks=all)
// each send RECORDS records "PREFIX-<producer>:<seq>" to PARTITION of TOPIC, concurrently.
// Per producer one line: "PRODUCER PREFIX-<producer> acked N errors E first-error ..."; an
// acknowledgement whose offset is not above the producer's previous one is an error too.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type producerResult struct {
	name     string
	acked    int
	errors   int
	firstErr string
}

func manyProducers(argv []string) int {
	if len(argv) != 6 {
		fmt.Fprintln(os.Stderr, "usage: franz-client many-producers BOOTSTRAP TOPIC PARTITION PRODUCERS RECORDS PREFIX")
		return 2
	}
	partition, err1 := strconv.Atoi(argv[2])
	producers, err2 := strconv.Atoi(argv[3])
	records, err3 := strconv.Atoi(argv[4])
	if err1 != nil || err2 != nil || err3 != nil {
		fmt.Fprintln(os.Stderr, "PARTITION, PRODUCERS and RECORDS must be numbers")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results := make([]producerResult, producers)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("%s-%d", argv[5], i)
			results[i] = produceOnePartition(ctx, argv[0], argv[1], int32(partition), records, name)
		}(i)
	}
	wg.Wait()
	failed := 0
	for _, r := range results {
		fmt.Printf("PRODUCER %s acked %d errors %d first-error %q\n", r.name, r.acked, r.errors, r.firstErr)
		if r.errors > 0 {
			failed++
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func produceOnePartition(ctx context.Context, bootstrap, topic string, partition int32, records int, name string) producerResult {
	res := producerResult{name: name}
	fail := func(msg string) {
		res.errors++
		if res.firstErr == "" {
			res.firstErr = msg
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		fail(err.Error())
		return res
	}
	defer cl.Close()
	var mu sync.Mutex
	last := int64(-1)
	for seq := 0; seq < records; seq++ {
		r := &kgo.Record{Partition: partition, Value: []byte(fmt.Sprintf("%s:%d", name, seq))}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				fail(err.Error())
			case r.Offset <= last:
				fail(fmt.Sprintf("offset %d after %d", r.Offset, last))
			default:
				last = r.Offset
				res.acked++
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		fail(err.Error())
	}
	mu.Lock()
	defer mu.Unlock()
	return res
}
