// The transactional scenario of integration/tests_py/test_transactions.py with franz-go:
//
//	franz-client txn BOOTSTRAP TOPIC TXN_ID
//
// Three transactions on partition 0 of TOPIC (which must exist): 20 records committed, 10
// produced, flushed and aborted, 5 committed. Then a read_committed consumer reads the
// partition to its end and prints "REC offset value" per record and "OK" at the end.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func txnRun(argv []string) error {
	if len(argv) != 3 {
		return fmt.Errorf("usage: franz-client txn BOOTSTRAP TOPIC TXN_ID")
	}
	bootstrap, topic, id := argv[0], argv[1], argv[2]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.TransactionalID(id),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	if err != nil {
		return err
	}
	defer p.Close()
	for t, plan := range []struct {
		n      int
		commit bool
	}{{20, true}, {10, false}, {5, true}} {
		if err := p.BeginTransaction(); err != nil {
			return fmt.Errorf("begin %d: %w", t, err)
		}
		for i := 0; i < plan.n; i++ {
			r := &kgo.Record{Partition: 0, Value: []byte(fmt.Sprintf("g%d-%d", t, i))}
			if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
				return fmt.Errorf("produce %d/%d: %w", t, i, err)
			}
		}
		if err := p.Flush(ctx); err != nil {
			return err
		}
		if err := p.EndTransaction(ctx, kgo.TransactionEndTry(plan.commit)); err != nil {
			return fmt.Errorf("end %d: %w", t, err)
		}
	}
	return txnConsume(ctx, bootstrap, topic)
}

func txnConsume(ctx context.Context, bootstrap, topic string) error {
	c, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
	)
	if err != nil {
		return err
	}
	defer c.Close()
	seen := 0
	for seen < 25 {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %d of 25 committed records: %w", seen, err)
		}
		for _, e := range fs.Errors() {
			return fmt.Errorf("fetch: %w", e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			fmt.Printf("REC %d %s\n", r.Offset, r.Value)
			seen++
		})
	}
	// Anything beyond the 25 committed records (an aborted one leaking) shows up here.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c.PollFetches(short).EachRecord(func(r *kgo.Record) {
		fmt.Printf("REC %d %s\n", r.Offset, r.Value)
	})
	fmt.Println("OK")
	return nil
}

func txnMain(argv []string) int {
	if err := txnRun(argv); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL %v\n", err)
		return 1
	}
	return 0
}
