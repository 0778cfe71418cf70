// diffclient: the franz-go side of Rill's differential suite (tests/all/diff_java_go.rs).
//
//	diffclient <scenario> --bootstrap HOST:PORT --topic T --group G
//
// Runs one scenario against one broker and prints one JSON observation as the last line
// of stdout; diagnostics go to stderr. An observation holds only what should not depend on
// which broker served it: no topic names, node ids, ports, cluster ids or wall-clock
// times. Errors are reported by Kafka's error names (kerr), or by a name for the client's
// own condition (a client-side timeout, an API the broker does not advertise).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var (
	bootstrap string
	topic     string
	group     string
)

type obj = map[string]any

func main() {
	if len(os.Args) < 2 {
		fatal("usage: diffclient <scenario> --bootstrap B --topic T --group G")
	}
	scenario := os.Args[1]
	fs := flag.NewFlagSet(scenario, flag.ExitOnError)
	fs.StringVar(&bootstrap, "bootstrap", "", "bootstrap address")
	fs.StringVar(&topic, "topic", "", "topic (prefix) unique to this run")
	fs.StringVar(&group, "group", "", "group unique to this run")
	_ = fs.Parse(os.Args[2:])
	scenarios := map[string]func() obj{
		"produce-consume":      produceConsume,
		"codecs":               codecs,
		"group-split-takeover": groupSplitTakeover,
		"group-restart-resume": groupRestartResume,
		"offsets-by-time":      offsetsByTime,
		"out-of-range":         outOfRange,
		"admin":                admin,
		"errors":               errorsScenario,
		"txn-commit-abort":     txnCommitAbort, // txn.go
		"txn-offsets":          txnOffsets,
		"txn-fencing":          txnFencing,
		"txn-lso":              txnLSO,
		"_member":              member, // a child process of group-split-takeover
	}
	run, ok := scenarios[scenario]
	if !ok {
		fatal("unknown scenario " + scenario)
	}
	out, err := json.Marshal(run())
	if err != nil {
		fatal(err.Error())
	}
	fmt.Println(string(out))
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "diffclient:", msg)
	os.Exit(1)
}

func check(err error, what string) {
	if err != nil {
		fatal(what + ": " + err.Error())
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "diffclient: "+format+"\n", args...)
}

// ctxFor is a deadline for one step; the process is short-lived, so its timer is simply
// left to fire.
func ctxFor(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	time.AfterFunc(d, cancel)
	return ctx
}

// errName normalises an error to Kafka's error name, or to a name for a client-side
// condition.
func errName(err error) any {
	if err == nil {
		return nil
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	switch {
	case errors.Is(err, kgo.ErrRecordTimeout):
		return "CLIENT_RECORD_TIMEOUT"
	case errors.Is(err, kgo.ErrRecordRetries):
		return "CLIENT_RECORD_RETRIES"
	case errors.Is(err, context.DeadlineExceeded):
		return "CLIENT_DEADLINE"
	case strings.Contains(err.Error(), "request key is unknown"),
		strings.Contains(err.Error(), "broker is too old"):
		// The broker does not advertise the API (or version): franz-go refuses to send it.
		// Java's client raises UnsupportedVersionException here, and a broker that
		// advertises an API it does not serve answers UNSUPPORTED_VERSION: the same name.
		return "UNSUPPORTED_VERSION"
	}
	return "OTHER: " + err.Error()
}

func newClient(opts ...kgo.Opt) *kgo.Client {
	base := []kgo.Opt{kgo.SeedBrokers(bootstrap), kgo.ClientID("rill-diff-go")}
	cl, err := kgo.NewClient(append(base, opts...)...)
	check(err, "new client")
	return cl
}

func createTopic(adm *kadm.Client, name string, partitions int32, configs map[string]*string) {
	r, err := adm.CreateTopic(ctxFor(30*time.Second), partitions, 1, configs, name)
	check(err, "create topic")
	check(r.Err, "create topic "+name)
	// Kafka creates topics asynchronously: wait until metadata names every partition (a
	// loaded CI machine has been seen to take over 10 s).
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		d, err := adm.ListTopics(ctxFor(10*time.Second), name)
		if err == nil && d[name].Err == nil && len(d[name].Partitions) == int(partitions) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	fatal("topic " + name + " never appeared in metadata")
}

func sha(b []byte) any {
	if b == nil {
		return nil
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

func str(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func recordObs(r *kgo.Record) obj {
	hs := [][]any{}
	for _, h := range r.Headers {
		hs = append(hs, []any{h.Key, str(h.Value)})
	}
	return obj{"offset": r.Offset, "key": str(r.Key), "value": sha(r.Value), "len": len(r.Value), "headers": hs}
}

// consumeAll reads partitions from the start until n records came, or 30 s pass.
func consumeAll(t string, n int, opts ...kgo.Opt) []*kgo.Record {
	cl := newClient(append([]kgo.Opt{
		kgo.ConsumeTopics(t),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(4 << 20),
	}, opts...)...)
	defer cl.Close()
	var got []*kgo.Record
	ctx := ctxFor(30 * time.Second)
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			fatal(fmt.Sprintf("consumed %d of %d records of %s", len(got), n, t))
		}
		for _, e := range fs.Errors() {
			logf("fetch error %s/%d: %v", e.Topic, e.Partition, e.Err)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

// ---- produce-consume ----

func produceConsume() obj {
	adm := kadm.NewClient(newClient())
	createTopic(adm, topic, 4, nil)
	// The producer's defaults: idempotent (InitProducerId, sequence numbers), and the
	// UniformBytesPartitioner with keys hashed by Kafka's murmur2 (as the Java client).
	cl := newClient(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(1<<20))
	var recs []*kgo.Record
	for i := 0; i < 40; i++ {
		r := kgo.KeyStringRecord(fmt.Sprintf("key-%d", i), fmt.Sprintf("value %d é ✓", i))
		r.Headers = []kgo.RecordHeader{{Key: "i", Value: []byte(strconv.Itoa(i))}, {Key: "dup", Value: []byte("a")}, {Key: "dup", Value: nil}}
		recs = append(recs, r)
	}
	recs = append(recs, &kgo.Record{Key: []byte("null-value"), Value: nil})
	big := make([]byte, 1_000_000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	recs = append(recs, &kgo.Record{Key: []byte("big"), Value: big})
	recs = append(recs, &kgo.Record{Key: nil, Value: []byte("no key")})
	res := cl.ProduceSync(ctxFor(30*time.Second), recs...)
	check(res.FirstErr(), "produce")
	cl.Close()
	got := consumeAll(topic, len(recs))
	parts := obj{}
	var unkeyed []obj
	landed := obj{}
	for _, r := range got {
		if r.Key == nil {
			unkeyed = append(unkeyed, obj{"value": sha(r.Value), "offset_is_known": r.Offset >= 0})
			continue
		}
		p := strconv.Itoa(int(r.Partition))
		l, _ := parts[p].([]obj)
		parts[p] = append(l, recordObs(r))
		landed[string(r.Key)] = r.Partition
	}
	return obj{
		"partitioner":   "franz-go default: UniformBytesPartitioner, keys by murmur2 (Kafka's)",
		"idempotent":    "franz-go default (on)",
		"partitions":    parts,
		"unkeyed":       unkeyed,
		"key_partition": landed,
	}
}

// ---- codecs ----

func codecs() obj {
	adm := kadm.NewClient(newClient())
	out := obj{}
	all := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	for _, name := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t := topic + "-" + name
		createTopic(adm, t, 1, nil)
		cl := newClient(kgo.DefaultProduceTopic(t), kgo.ProducerBatchCompression(all[name]))
		var recs []*kgo.Record
		for i := 0; i < 200; i++ {
			recs = append(recs, kgo.KeyStringRecord(fmt.Sprintf("k%d", i%7), strings.Repeat(fmt.Sprintf("%s %d ", name, i), 20)))
		}
		check(cl.ProduceSync(ctxFor(30*time.Second), recs...).FirstErr(), "produce "+name)
		cl.Close()
		got := consumeAll(t, len(recs))
		h := sha256.New()
		var offsets []int64
		for _, r := range got {
			h.Write(r.Key)
			h.Write(r.Value)
			offsets = append(offsets, r.Offset)
		}
		out[name] = obj{"count": len(got), "sha": hex.EncodeToString(h.Sum(nil)[:8]), "first": offsets[0], "last": offsets[len(offsets)-1]}
	}
	return out
}

// ---- groups ----

// produceEach writes n records to every partition of t (manual partitioning).
func produceEach(t string, partitions int32, n int) {
	cl := newClient(kgo.DefaultProduceTopic(t), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	var recs []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		for i := 0; i < n; i++ {
			recs = append(recs, &kgo.Record{Partition: p, Value: []byte(fmt.Sprintf("p%d-%d", p, i))})
		}
	}
	check(cl.ProduceSync(ctxFor(30*time.Second), recs...).FirstErr(), "produce")
}

type groupMember struct {
	cl       *kgo.Client
	mu       sync.Mutex
	owned    map[int32]bool
	assigned chan []int32 // the whole assignment after every change
}

func (m *groupMember) change(add bool, a map[string][]int32) {
	m.mu.Lock()
	for _, p := range a[topic] {
		if add {
			m.owned[p] = true
		} else {
			delete(m.owned, p)
		}
	}
	var ps []int32
	for p := range m.owned {
		ps = append(ps, p)
	}
	m.mu.Unlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	m.assigned <- ps
}

func joinGroup(extra ...kgo.Opt) *groupMember {
	m := &groupMember{assigned: make(chan []int32, 64), owned: map[int32]bool{}}
	m.cl = newClient(append([]kgo.Opt{
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { m.change(true, a) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { m.change(false, a) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { m.change(false, a) }),
	}, extra...)...)
	return m
}

// pollUntil polls until every partition in want has a record at or past its offset.
func (m *groupMember) pollUntil(want map[int32]int64, d time.Duration) map[int32][]int64 {
	seen := map[int32][]int64{}
	ctx := ctxFor(d)
	done := func() bool {
		for p, o := range want {
			s := seen[p]
			if len(s) == 0 || s[len(s)-1] < o {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := m.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			fatal(fmt.Sprintf("waited for %v, saw %v", want, seen))
		}
		fs.EachRecord(func(r *kgo.Record) { seen[r.Partition] = append(seen[r.Partition], r.Offset) })
	}
	return seen
}

func commit(cl *kgo.Client, offsets map[int32]int64) {
	m := map[int32]kgo.EpochOffset{}
	for p, o := range offsets {
		m[p] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	var cerr error
	cl.CommitOffsetsSync(ctxFor(20*time.Second), map[string]map[int32]kgo.EpochOffset{topic: m},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			cerr = err
			if resp != nil {
				for _, t := range resp.Topics {
					for _, p := range t.Partitions {
						if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
							cerr = e
						}
					}
				}
			}
		})
	check(cerr, "commit")
}

func fetchCommitted(adm *kadm.Client) map[string]int64 {
	r, err := adm.FetchOffsets(ctxFor(20*time.Second), group)
	check(err, "fetch offsets")
	out := map[string]int64{}
	r.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			check(o.Err, "fetch offset")
			out[strconv.Itoa(int(o.Partition))] = o.At
		}
	})
	return out
}

// member (a child process of group-split-takeover): joins, waits until the group has
// split, consumes its partitions, commits offset 4 on each, prints them, and then waits
// to be killed (SIGKILL: it dies without leaving the group).
func member() obj {
	m := joinGroup()
	var mine []int32
	for len(mine) != 2 {
		select {
		case mine = <-m.assigned:
		case <-ctxFor(60 * time.Second).Done():
			fatal("the child member never got 2 partitions")
		}
		logf("child assigned %v", mine)
	}
	want := map[int32]int64{}
	for _, p := range mine {
		want[p] = 9
	}
	m.pollUntil(want, 30*time.Second)
	c := map[int32]int64{}
	for _, p := range mine {
		c[p] = 4
	}
	commit(m.cl, c)
	b, _ := json.Marshal(obj{"partitions": mine})
	fmt.Println(string(b))
	time.Sleep(10 * time.Minute)
	return nil
}

func groupSplitTakeover() obj {
	adm := kadm.NewClient(newClient())
	createTopic(adm, topic, 4, nil)
	produceEach(topic, 4, 10)
	a := joinGroup()
	defer a.cl.Close()
	first := <-a.assigned
	logf("member A first assigned %v", first)
	// Member B runs in a child process, so that it can die without leaving the group.
	exe, _ := os.Executable()
	child := exec.Command(exe, "_member", "--bootstrap", bootstrap, "--topic", topic, "--group", group)
	child.Stderr = os.Stderr
	stdout, err := child.StdoutPipe()
	check(err, "child pipe")
	check(child.Start(), "start child")
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	// Keep polling so that A takes part in the rebalance B's join starts.
	var mine []int32
	childOut := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		n, _ := stdout.Read(buf)
		childOut <- string(buf[:n])
	}()
	var childSaid string
	deadline := time.Now().Add(60 * time.Second)
	for childSaid == "" || len(mine) != 2 {
		if time.Now().After(deadline) {
			fatal(fmt.Sprintf("no split: A has %v, child said %q", mine, childSaid))
		}
		select {
		case mine = <-a.assigned:
			logf("member A assigned %v", mine)
		case s := <-childOut:
			childSaid = s
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		a.cl.PollFetches(ctx)
		cancel()
	}
	var childObs struct{ Partitions []int32 }
	check(json.Unmarshal([]byte(strings.TrimSpace(childSaid)), &childObs), "child output")
	// A commits offset 6 on its partitions (it has read them all in the polls above or
	// reads them now; the commit names the offset explicitly).
	c := map[int32]int64{}
	for _, p := range mine {
		c[p] = 6
	}
	commit(a.cl, c)
	committedBefore := fetchCommitted(adm)
	// B dies: SIGKILL, no LeaveGroup; the coordinator notices at the session timeout.
	_ = child.Process.Kill()
	_ = child.Wait()
	died := time.Now()
	var after []int32
	firsts := map[int32]int64{}
	deadline = time.Now().Add(60 * time.Second)
	for len(after) != 4 || len(firsts) < len(childObs.Partitions) {
		if time.Now().After(deadline) {
			fatal(fmt.Sprintf("no takeover: A has %v, first offsets %v", after, firsts))
		}
		select {
		case after = <-a.assigned:
			logf("member A assigned %v after %v", after, time.Since(died))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := a.cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			if _, ok := firsts[r.Partition]; !ok {
				firsts[r.Partition] = r.Offset
			}
		})
	}
	var resumed []int64
	for _, p := range childObs.Partitions {
		resumed = append(resumed, firsts[p])
	}
	return obj{
		"assignor":              "cooperative-sticky (franz-go default)",
		"how_b_ends":            "dies: SIGKILL of its process, no LeaveGroup; session.timeout.ms 6000",
		"sizes":                 []int{len(mine), len(childObs.Partitions)},
		"a_after_takeover":      len(after),
		"committed":             sortedValues(committedBefore),
		"taken_over_resumed_at": resumed,
		"a_kept_reading_own":    len(firsts) == len(childObs.Partitions),
	}
}

func sortedValues(m map[string]int64) []int64 {
	var v []int64
	for _, x := range m {
		v = append(v, x)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v
}

func groupRestartResume() obj {
	adm := kadm.NewClient(newClient())
	createTopic(adm, topic, 2, nil)
	produceEach(topic, 2, 10)
	m := joinGroup()
	m.pollUntil(map[int32]int64{0: 9, 1: 9}, 30*time.Second)
	commit(m.cl, map[int32]int64{0: 7, 1: 3})
	m.cl.Close() // leaves the group
	committed := fetchCommitted(adm)
	r := joinGroup()
	defer r.cl.Close()
	seen := r.pollUntil(map[int32]int64{0: 9, 1: 9}, 30*time.Second)
	return obj{
		"committed":   committed,
		"resumed_at":  obj{"0": seen[0][0], "1": seen[1][0]},
		"reread":      obj{"0": len(seen[0]), "1": len(seen[1])},
		"how_a_stops": "Close (LeaveGroup)",
	}
}

// ---- offsets-by-time ----

const t0 = int64(1_700_000_000_000)

func listOffset(cl *kgo.Client, ts int64) obj {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition = 0
	rp.Timestamp = ts
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxFor(20*time.Second), cl)
	check(err, "list offsets")
	p := resp.Topics[0].Partitions[0]
	return obj{"error": errName(kerr.ErrorForCode(p.ErrorCode)), "offset": p.Offset, "timestamp": p.Timestamp}
}

func offsetsByTime() obj {
	adm := kadm.NewClient(newClient())
	createTopic(adm, topic, 1, nil)
	cl := newClient(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// Two batches (two ProduceSync calls): [t0, t0+1000] and [t0+2000, t0+2000, t0+3000].
	mk := func(ts int64, v string) *kgo.Record {
		return &kgo.Record{Value: []byte(v), Timestamp: time.UnixMilli(ts)}
	}
	check(cl.ProduceSync(ctxFor(20*time.Second), mk(t0, "a"), mk(t0+1000, "b")).FirstErr(), "produce")
	check(cl.ProduceSync(ctxFor(20*time.Second), mk(t0+2000, "c"), mk(t0+2000, "d"), mk(t0+3000, "e")).FirstErr(), "produce")
	out := obj{}
	for name, ts := range map[string]int64{
		"before": t0 - 500, "at_first": t0, "between_first_and_second": t0 + 500,
		"at_second": t0 + 1000, "between_batches": t0 + 1500, "at_duplicate": t0 + 2000,
		"at_last": t0 + 3000, "after": t0 + 5000, "earliest": -2, "latest": -1,
	} {
		out[name] = listOffset(cl, ts)
	}
	// kadm's view of the same (what most franz-go users call).
	l, err := adm.ListOffsetsAfterMilli(ctxFor(20*time.Second), t0+1000, topic)
	check(err, "ListOffsetsAfterMilli")
	l.Each(func(o kadm.ListedOffset) {
		out["kadm_after_milli_at_second"] = obj{"offset": o.Offset, "timestamp": o.Timestamp, "error": errName(o.Err)}
	})
	return out
}

// ---- out-of-range ----

func outOfRange() obj {
	adm := kadm.NewClient(newClient())
	createTopic(adm, topic, 1, nil)
	produceEach(topic, 1, 5)
	out := obj{}
	// Committing past the end is accepted by Kafka (offsets are not checked).
	var os kadm.Offsets
	os.AddOffset(topic, 0, 100, -1)
	r, err := adm.CommitOffsets(ctxFor(20*time.Second), group, os)
	check(err, "commit past the end")
	out["commit_past_end"] = errName(r.Error())
	out["committed_past_end"] = fetchCommitted(adm)
	for _, reset := range []string{"earliest", "latest", "none"} {
		var o kgo.Offset
		switch reset {
		case "earliest":
			o = kgo.NewOffset().AtStart()
		case "latest":
			o = kgo.NewOffset().AtEnd()
		case "none":
			o = kgo.NewOffset().AtCommitted() // NoResetOffset: out of range is an error
		}
		// Group consumer starting at the committed offset 100.
		out["group_"+reset] = consumeFromBadOffset(o, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit())
		// Direct assignment at offset 100 (a seek past the end).
		out["seek_"+reset] = consumeFromBadOffset(o, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(100)}}))
	}
	return out
}

// consumeFromBadOffset consumes with reset policy o from an offset past the end: it reports
// the first record's offset (after producing one more record, for "latest") or the error.
func consumeFromBadOffset(o kgo.Offset, opts ...kgo.Opt) obj {
	cl := newClient(append([]kgo.Opt{kgo.ConsumeResetOffset(o), kgo.FetchMaxWait(500 * time.Millisecond)}, opts...)...)
	defer cl.Close()
	produced := false
	start := time.Now()
	for {
		if time.Since(start) > 8*time.Second {
			return obj{"result": "nothing within 8 s"}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			fs = kgo.Fetches{} // a poll that timed out carries only the context error
		}
		for _, e := range fs.Errors() {
			return obj{"error": errName(e.Err)}
		}
		recs := fs.Records()
		if len(recs) > 0 {
			// Which record comes first tells where the reset went; whether a new record was
			// needed tells "latest" apart.
			return obj{"first_offset": recs[0].Offset, "needed_a_new_record": produced}
		}
		if !produced && time.Since(start) > 2*time.Second {
			produceEach(topic, 1, 1)
			produced = true
		}
	}
}

// ---- admin ----

func admin() obj {
	cl := newClient()
	adm := kadm.NewClient(cl)
	ctx := ctxFor(60 * time.Second)
	out := obj{}
	ta, tb := topic+"-a", topic+"-b"
	ret := "3600000"
	created, err := adm.CreateTopics(ctx, 3, 1, nil, ta)
	check(err, "create")
	out["create_a"] = obj{"error": errName(created[ta].Err), "partitions": created[ta].NumPartitions, "rf": created[ta].ReplicationFactor}
	createdB, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{"retention.ms": &ret}, tb)
	check(err, "create")
	out["create_b"] = obj{"error": errName(createdB[tb].Err), "partitions": createdB[tb].NumPartitions}
	again, err := adm.CreateTopics(ctx, 3, 1, nil, ta)
	check(err, "create again")
	out["create_a_again"] = errName(again[ta].Err)
	for i := 0; i < 50; i++ { // topics appear in metadata asynchronously on Kafka
		d, err := adm.ListTopics(ctx, ta, tb)
		if err == nil && d[ta].Err == nil && d[tb].Err == nil && len(d[ta].Partitions) == 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	all, err := adm.ListTopics(ctx)
	check(err, "list topics")
	listed := obj{}
	for _, name := range []string{ta, tb} {
		d, ok := all[name]
		if !ok {
			listed[name[len(topic):]] = nil
			continue
		}
		var rfs []int
		for _, p := range d.Partitions.Sorted() {
			rfs = append(rfs, len(p.Replicas))
		}
		listed[name[len(topic):]] = obj{"partitions": len(d.Partitions), "replicas": rfs, "internal": d.IsInternal, "error": errName(d.Err)}
	}
	out["list_topics"] = listed
	// DescribeConfigs: the keys clients commonly read.
	keys := []string{"cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "max.message.bytes", "compression.type", "message.timestamp.type", "min.insync.replicas"}
	rc, err := adm.DescribeTopicConfigs(ctx, tb)
	out["describe_topic_configs"] = configsObs(rc, err, keys)
	meta, err := adm.BrokerMetadata(ctx)
	check(err, "broker metadata")
	brokerKeys := []string{"auto.create.topics.enable", "num.partitions", "message.max.bytes", "default.replication.factor"}
	rcb, err := adm.DescribeBrokerConfigs(ctx, meta.Brokers[0].NodeID)
	out["describe_broker_configs"] = configsObs(rcb, err, brokerKeys)
	// DeleteTopics, then metadata no longer names the topic.
	del, err := adm.DeleteTopics(ctx, ta)
	if err != nil {
		out["delete_a"] = errName(err)
	} else {
		out["delete_a"] = errName(del[ta].Err)
	}
	gone := false
	// franz-go answers from its metadata cache (kgo keeps it up to MetadataMinAge, 5 s by
	// default), so allow well past that.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !gone; {
		d, err := adm.ListTopics(ctx, ta)
		gone = err == nil && errors.Is(d[ta].Err, kerr.UnknownTopicOrPartition)
		if !gone {
			time.Sleep(100 * time.Millisecond)
		}
	}
	out["a_gone_from_metadata"] = gone
	// A group with committed offsets: a member joins, commits, and leaves.
	produceEach(tb, 1, 3)
	m := newClient(kgo.ConsumerGroup(group), kgo.ConsumeTopics(tb), kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := 0
	for seen < 3 {
		fs := m.PollFetches(ctx)
		check(ctx.Err(), "consume for the group")
		seen += len(fs.Records())
	}
	check(m.CommitUncommittedOffsets(ctx), "commit")
	m.Close()
	lg, err := adm.ListGroups(ctx)
	check(err, "list groups")
	if g, ok := lg[group]; ok {
		out["list_groups"] = obj{"state": g.State, "protocol_type": g.ProtocolType}
	} else {
		out["list_groups"] = "missing"
	}
	dg, err := adm.DescribeGroups(ctx, group)
	check(err, "describe groups")
	g := dg[group]
	out["describe_group"] = obj{"state": g.State, "protocol_type": g.ProtocolType, "protocol": g.Protocol, "members": len(g.Members), "error": errName(g.Err)}
	fo, err := adm.FetchOffsets(ctx, group)
	check(err, "fetch offsets")
	offs := obj{}
	fo.Each(func(o kadm.OffsetResponse) {
		offs[o.Topic[len(topic):]+"/"+strconv.Itoa(int(o.Partition))] = obj{"offset": o.At, "error": errName(o.Err)}
	})
	out["group_offsets"] = offs
	// DescribeCluster (API 60), as the Java AdminClient sends it.
	dc := kmsg.NewPtrDescribeClusterRequest()
	dcr, err := dc.RequestWith(ctx, cl)
	if err != nil {
		out["describe_cluster"] = obj{"error": errName(err)}
	} else {
		out["describe_cluster"] = obj{"error": errName(kerr.ErrorForCode(dcr.ErrorCode)), "brokers": len(dcr.Brokers), "has_cluster_id": dcr.ClusterID != "", "controller_is_a_broker": containsBroker(dcr.Brokers, dcr.ControllerID)}
	}
	out["metadata_brokers"] = len(meta.Brokers)
	return out
}

func containsBroker(bs []kmsg.DescribeClusterResponseBroker, id int32) bool {
	for _, b := range bs {
		if b.NodeID == id {
			return true
		}
	}
	return false
}

func configsObs(rc kadm.ResourceConfigs, err error, keys []string) obj {
	if err != nil {
		return obj{"error": errName(err)}
	}
	if len(rc) != 1 {
		return obj{"error": fmt.Sprintf("%d resources", len(rc))}
	}
	if rc[0].Err != nil {
		return obj{"error": errName(rc[0].Err)}
	}
	vals := obj{}
	for _, k := range keys {
		vals[k] = "absent"
	}
	for _, c := range rc[0].Configs {
		if _, ok := vals[c.Key]; ok {
			var v any
			if c.Value != nil {
				v = *c.Value
			}
			// The value, and whether it was set on the resource itself; the other sources
			// (static file, cluster default, built-in default) are how each broker's
			// deployment happens to be configured.
			vals[c.Key] = obj{"value": v, "set_on_topic": c.Source == kmsg.ConfigSourceDynamicTopicConfig}
		}
	}
	return vals
}

// ---- errors ----

func errorsScenario() obj {
	out := obj{}
	missing := topic + "-missing"
	// Produce to a topic that does not exist (auto-creation off on both brokers).
	cl := newClient(kgo.DefaultProduceTopic(missing), kgo.RecordDeliveryTimeout(3*time.Second), kgo.UnknownTopicRetries(2))
	r := cl.ProduceSync(ctxFor(20*time.Second), kgo.StringRecord("x"))
	out["produce_unknown_topic"] = errName(r.FirstErr())
	cl.Close()
	// Metadata for it, without auto-creation.
	cl = newClient()
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(missing)
	req.Topics = append(req.Topics, mt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctxFor(20*time.Second), cl)
	check(err, "metadata")
	out["metadata_unknown_topic"] = errName(kerr.ErrorForCode(resp.Topics[0].ErrorCode))
	// An oversize record: 1,100,000 bytes > Kafka's default max.message.bytes (1048588); the
	// client's own limit is raised so the broker is the one to refuse it.
	adm := kadm.NewClient(cl)
	createTopic(adm, topic, 1, nil)
	big := newClient(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(2<<20), kgo.RecordRetries(1))
	// Not compressible (franz-go compresses with snappy by default).
	noise := make([]byte, 1_100_000)
	x := uint32(2463534242)
	for i := range noise {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		noise[i] = byte(x)
	}
	r = big.ProduceSync(ctxFor(20*time.Second), &kgo.Record{Value: noise})
	out["oversize_record"] = errName(r.FirstErr())
	// The topic is still usable afterwards.
	r = big.ProduceSync(ctxFor(20*time.Second), kgo.StringRecord("small"))
	out["small_after_oversize"] = errName(r.FirstErr())
	big.Close()
	// DescribeAcls: Kafka without an authorizer answers SECURITY_DISABLED.
	acls, err := adm.DescribeACLs(ctxFor(20*time.Second), kadm.NewACLs().Topics("*").ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny).Allow().Deny().AllowHosts().DenyHosts())
	if err == nil {
		for _, a := range acls {
			if a.Err != nil {
				err = a.Err
			}
		}
	}
	out["describe_acls"] = errName(err)
	// An API neither broker offers by default: ShareGroupDescribe (KIP-932).
	sg := kmsg.NewPtrShareGroupDescribeRequest()
	sg.GroupIDs = []string{group}
	sgr, err := sg.RequestWith(ctxFor(20*time.Second), cl)
	if err == nil && len(sgr.Groups) > 0 {
		err = kerr.ErrorForCode(sgr.Groups[0].ErrorCode)
	}
	out["share_group_describe"] = errName(err)
	cl.Close()
	return out
}
