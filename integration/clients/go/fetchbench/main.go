// Command fetchbench keeps one franz-go consumer fetching a wide topic, so that a broker's
// cost per fetch can be measured with and without incremental fetch sessions (KIP-227).
//
//	fetchbench BOOTSTRAP TOPIC PARTITIONS SECONDS sessions|nosessions
//
// It creates TOPIC with PARTITIONS partitions if it does not exist, then for SECONDS
// consumes every partition from its end while a producer writes one small record per
// 10 ms to a few partitions, so most fetches find a little data and most partitions none.
// It prints the records consumed; the broker's metrics tell the rest.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fetchbench:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 6 {
		return errors.New("usage: fetchbench BOOTSTRAP TOPIC PARTITIONS SECONDS sessions|nosessions")
	}
	bootstrap, topic := os.Args[1], os.Args[2]
	partitions, err := strconv.Atoi(os.Args[3])
	if err != nil || partitions < 1 {
		return fmt.Errorf("bad PARTITIONS %q", os.Args[3])
	}
	seconds, err := strconv.Atoi(os.Args[4])
	if err != nil || seconds < 1 {
		return fmt.Errorf("bad SECONDS %q", os.Args[4])
	}
	sessions := os.Args[5] == "sessions"
	if err := ensureTopic(bootstrap, topic, partitions); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
	defer cancel()
	var produced atomic.Int64
	go produce(ctx, bootstrap, topic, partitions, &produced)
	consumed, err := consume(ctx, bootstrap, topic, sessions)
	if err != nil {
		return err
	}
	fmt.Printf("fetchbench: partitions=%d seconds=%d sessions=%v produced=%d consumed=%d\n",
		partitions, seconds, sessions, produced.Load(), consumed)
	return nil
}

func ensureTopic(bootstrap, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	return nil
}

// produce writes one record every 10 ms, round robin over the first 16 partitions.
func produce(ctx context.Context, bootstrap, topic string, partitions int, n *atomic.Int64) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return
	}
	defer cl.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	hot := min(partitions, 16)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r := &kgo.Record{Topic: topic, Partition: int32(i % hot), Value: []byte("x")}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err == nil {
				n.Add(1)
			}
		})
	}
}

func consume(ctx context.Context, bootstrap, topic string, sessions bool) (int64, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}
	if !sessions {
		opts = append(opts, kgo.DisableFetchSessions())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var consumed int64
	for ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		for _, e := range fetches.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) && !errors.Is(e.Err, context.Canceled) {
				return consumed, fmt.Errorf("fetch %s/%d: %w", e.Topic, e.Partition, e.Err)
			}
		}
		consumed += int64(fetches.NumRecords())
	}
	return consumed, nil
}
