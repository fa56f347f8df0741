package main

// The consumer-group member of integration/clients/GROUPS.md with franz-go:
//
//	franz-client group-member BOOTSTRAP TOPIC GROUP NAME
//
// Subscribes to TOPIC in GROUP and logs assignment events and every consumed
// record on stdout. Autocommit (1 s) plus a commit of the consumed positions
// on every revoke (what franz-go's default OnPartitionsRevoked does);
// BlockRebalanceOnPoll, so no record is processed after its partition was
// revoked. SIGTERM: stop consuming, commit, leave the group, exit 0.
// Env: GROUP_ASSIGNOR (cooperative-sticky = franz-go's default | range |
// roundrobin | sticky), GROUP_PROTOCOL (classic | consumer: KIP-848 via
// ServerSideBalancer; needs range or sticky), GROUP_SESSION_TIMEOUT_MS,
// GROUP_HEARTBEAT_INTERVAL_MS, GROUP_INSTANCE_ID.

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

var outMu sync.Mutex

func out(format string, v ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", v...)
}

func nowMs() int64 { return time.Now().UnixMilli() }

func partList(m map[string][]int32) string {
	var ps []int
	for _, parts := range m {
		for _, p := range parts {
			ps = append(ps, int(p))
		}
	}
	if len(ps) == 0 {
		return "-"
	}
	sort.Ints(ps)
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

func envMs(k string, d int) time.Duration {
	v, err := strconv.Atoi(getenv(k, strconv.Itoa(d)))
	if err != nil {
		v = d
	}
	return time.Duration(v) * time.Millisecond
}

func groupMember(argv []string) int {
	if len(argv) != 4 {
		fmt.Fprintln(os.Stderr, "usage: franz-client group-member BOOTSTRAP TOPIC GROUP NAME")
		return 2
	}
	bootstrap, topic, group, name := argv[0], argv[1], argv[2], argv[3]
	assignor := getenv("GROUP_ASSIGNOR", "cooperative-sticky")
	protocol := getenv("GROUP_PROTOCOL", "classic")

	opts := []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(envMs("GROUP_SESSION_TIMEOUT_MS", 6000)),
		kgo.HeartbeatInterval(envMs("GROUP_HEARTBEAT_INTERVAL_MS", 1000)),
		kgo.AutoCommitInterval(time.Second),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			out("ASSIGNED %d %s", nowMs(), partList(m))
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			if pl := partList(m); pl != "-" {
				out("REVOKED %d %s", nowMs(), pl)
			}
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "%s: commit on revoke: %v\n", name, err)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if pl := partList(m); pl != "-" {
				out("LOST %d %s", nowMs(), pl)
			}
		}),
	}
	switch assignor {
	case "cooperative-sticky":
		// franz-go's default balancer; nothing to set.
	case "range":
		opts = append(opts, kgo.Balancers(kgo.RangeBalancer()))
	case "roundrobin":
		opts = append(opts, kgo.Balancers(kgo.RoundRobinBalancer()))
	case "sticky":
		opts = append(opts, kgo.Balancers(kgo.StickyBalancer()))
	default:
		fmt.Fprintf(os.Stderr, "bad GROUP_ASSIGNOR %q\n", assignor)
		return 2
	}
	switch protocol {
	case "classic":
	case "consumer":
		opts = append(opts, kgo.ServerSideBalancer())
	default:
		fmt.Fprintf(os.Stderr, "bad GROUP_PROTOCOL %q\n", protocol)
		return 2
	}
	if id := getenv("GROUP_INSTANCE_ID", ""); id != "" {
		opts = append(opts, kgo.InstanceID(id))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	out("START %d %s franz-go/%s/%s", nowMs(), name, protocol, assignor)
	rc := 0
	for {
		fetches := cl.PollRecords(ctx, 200)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			fmt.Fprintf(os.Stderr, "%s: fetch error %s[%d]: %v\n", name, t, p, err)
		})
		var sb strings.Builder
		t := nowMs()
		fetches.EachRecord(func(r *kgo.Record) {
			seq := "-1"
			if i := strings.IndexByte(string(r.Value), ':'); i >= 0 {
				seq = string(r.Value[i+1:])
			}
			fmt.Fprintf(&sb, "REC %d %d %d %s\n", t, r.Partition, r.Offset, seq)
		})
		if sb.Len() > 0 {
			out("%s", strings.TrimSuffix(sb.String(), "\n"))
		}
		cl.AllowRebalance()
	}
	out("CLOSING %d", nowMs())
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := cl.CommitUncommittedOffsets(cctx); err != nil {
		fmt.Fprintf(os.Stderr, "%s: final commit: %v\n", name, err)
		rc = 1
	}
	cancel()
	// Leave the group; the final revoke (which also commits) runs while leaving.
	cl.CloseAllowingRebalance()
	out("CLOSED %d", nowMs())
	return rc
}
