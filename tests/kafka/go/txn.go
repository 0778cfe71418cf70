// The transactions scenarios of the franz-go side of the differential suite
// (tests/all/transactions.rs): txn-commit-abort, txn-offsets, txn-fencing, txn-lso.
//
// Transactional ids are named after the run's group (unique per run). Records go to explicit
// partitions and every transaction is flushed before it ends, so the offsets of records and
// of transaction markers are the same in every run and are compared exactly.
package main

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// How long a read_committed consumer is given to (not) see records past an open
	// transaction.
	blockedWait = 2 * time.Second
	// How long a reader keeps polling after it has what it expects, to catch extra records.
	tailWait = 500 * time.Millisecond
)

// out is a record to send: its partition and value.
type out struct {
	partition int32
	value     string
}

func txnClient(suffix string, opts ...kgo.Opt) *kgo.Client {
	return newClient(append([]kgo.Opt{
		kgo.TransactionalID(group + "-" + suffix),
		kgo.TransactionTimeout(10 * time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	}, opts...)...)
}

func plainClient() *kgo.Client {
	return newClient(kgo.RecordPartitioner(kgo.ManualPartitioner()))
}

// fencedName is errName plus a category: "fenced" for every name of "another producer with
// this transactional id took over" (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH), else the
// error's name.
func fencedName(err error) any {
	if err == nil {
		return nil
	}
	category := errName(err)
	if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) {
		category = "fenced"
	}
	return obj{"error": errName(err), "category": category}
}

// send produces records to t in order and waits for them; it returns each one's
// [partition, offset], or its error, in send order.
func send(cl *kgo.Client, t string, records []out) []any {
	var rs []*kgo.Record
	sent := map[*kgo.Record]int{} // ProduceSync gives results in the order they complete
	for i, o := range records {
		r := &kgo.Record{Topic: t, Partition: o.partition, Value: []byte(o.value)}
		rs = append(rs, r)
		sent[r] = i
	}
	reports := make([]any, len(records))
	for _, r := range cl.ProduceSync(ctxFor(30*time.Second), rs...) {
		if r.Err != nil {
			reports[sent[r.Record]] = fencedName(r.Err)
		} else {
			reports[sent[r.Record]] = []any{r.Record.Partition, r.Record.Offset}
		}
	}
	return reports
}

// endTxn ends the open transaction (the records were flushed by send) and returns its error.
func endTxn(cl *kgo.Client, commit kgo.TransactionEndTry) any {
	return fencedName(cl.EndTransaction(ctxFor(30*time.Second), commit))
}

// pollRecords polls until want records came (or timeout passed), then tailWait more for any
// extra; it returns {partition: [[offset, value]]} in arrival order and the errors seen.
func pollRecords(cl *kgo.Client, want int, timeout time.Duration) obj {
	got := obj{}
	errs := []any{}
	n := 0
	deadline := time.Now().Add(timeout)
	var tailEnd time.Time
	for {
		now := time.Now()
		if tailEnd.IsZero() && (n >= want || !now.Before(deadline)) {
			tailEnd = now.Add(tailWait)
		}
		if !tailEnd.IsZero() && !now.Before(tailEnd) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		fs := cl.PollFetches(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			continue // a poll that timed out carries only the context error
		}
		for _, e := range fs.Errors() {
			errs = append(errs, errName(e.Err))
		}
		fs.EachRecord(func(r *kgo.Record) {
			p := strconv.Itoa(int(r.Partition))
			l, _ := got[p].([]any)
			got[p] = append(l, []any{r.Offset, string(r.Value)})
			n++
		})
	}
	return obj{"records": got, "errors": errs}
}

// reader consumes partitions 0..parts-1 of t from the start with this isolation level.
func reader(t string, parts int32, level kgo.IsolationLevel) *kgo.Client {
	ps := map[int32]kgo.Offset{}
	for p := int32(0); p < parts; p++ {
		ps[p] = kgo.NewOffset().AtStart()
	}
	return newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t: ps}),
		kgo.FetchIsolationLevel(level),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
}

// readFromStart is every record of t a consumer with this isolation level sees.
func readFromStart(t string, parts int32, level kgo.IsolationLevel, want int) obj {
	cl := reader(t, parts, level)
	defer cl.Close()
	return pollRecords(cl, want, 20*time.Second)
}

// endOffsets lists the end offset of every partition of t: kadm's ListEndOffsets
// (ListOffsets latest, read_uncommitted) and ListCommittedOffsets (read_committed).
func endOffsets(t string) obj {
	adm := kadm.NewClient(newClient())
	defer adm.Close()
	res := obj{}
	for name, list := range map[string]func(context.Context, ...string) (kadm.ListedOffsets, error){
		"read_uncommitted": adm.ListEndOffsets,
		"read_committed":   adm.ListCommittedOffsets,
	} {
		l, err := list(ctxFor(20*time.Second), t)
		if err != nil {
			res[name] = obj{"error": errName(err)}
			continue
		}
		m := obj{}
		l.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				m[strconv.Itoa(int(o.Partition))] = obj{"error": errName(o.Err)}
			} else {
				m[strconv.Itoa(int(o.Partition))] = o.Offset
			}
		})
		res[name] = m
	}
	return res
}

// ---- txn-commit-abort ----

// txnCommitAbort: transactions A (committed), B (aborted) and C (committed) over 2 partitions.
func txnCommitAbort() obj {
	adm := kadm.NewClient(newClient())
	createTopic(adm, topic, 2, nil)
	cl := txnClient("txn")
	defer cl.Close()
	txns := []struct {
		name    string
		end     kgo.TransactionEndTry
		records []out
	}{
		{"a", kgo.TryCommit, []out{{0, "a1"}, {1, "a2"}, {0, "a3"}}},
		{"b", kgo.TryAbort, []out{{0, "b1"}, {1, "b2"}, {0, "b3"}}},
		{"c", kgo.TryCommit, []out{{0, "c1"}, {1, "c2"}}},
	}
	delivered, ended := obj{}, obj{}
	for _, txn := range txns {
		check(cl.BeginTransaction(), "begin "+txn.name)
		delivered[txn.name] = send(cl, topic, txn.records)
		ended[txn.name] = endTxn(cl, txn.end)
	}
	return obj{
		"delivered":        delivered,
		"ended":            ended,
		"read_committed":   readFromStart(topic, 2, kgo.ReadCommitted(), 5),
		"read_uncommitted": readFromStart(topic, 2, kgo.ReadUncommitted(), 8),
		"end_offsets":      endOffsets(topic),
	}
}

// ---- txn-offsets ----

// take polls the next n records of the session (polling at most what is still missing).
func take(s *kgo.GroupTransactSession, n int) ([]*kgo.Record, []any) {
	var got []*kgo.Record
	errs := []any{}
	ctx := ctxFor(30 * time.Second)
	for len(got) < n && ctx.Err() == nil {
		fs := s.PollRecords(ctx, n-len(got))
		if ctx.Err() != nil {
			break
		}
		for _, e := range fs.Errors() {
			errs = append(errs, errName(e.Err))
		}
		got = append(got, fs.Records()...)
	}
	return got, errs
}

// committedOffset is the group's committed offset of partition 0 of t: OffsetFetch naming
// that partition with RequireStable, asked again while Kafka answers UNSTABLE_OFFSET_COMMIT
// (a transaction that commits offsets has not finished writing its markers), as Java's and
// librdkafka's read_committed consumers do. (Kafka leaves a partition whose offsets are
// still pending out of an OffsetFetch of all topics, which kadm.FetchOffsets sends.)
func committedOffset(cl *kgo.Client, t string) any {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = group
		req.RequireStable = true
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic = t
		rt.Partitions = []int32{0}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxFor(20*time.Second), cl)
		if err != nil {
			return obj{"error": errName(err)}
		}
		var code int16
		var at int64 = -1
		found := false
		// The sharder answers in the v8+ shape (Groups) or the older one (Topics).
		for _, g := range resp.Groups {
			code = g.ErrorCode
			for _, gt := range g.Topics {
				for _, p := range gt.Partitions {
					found, at = true, p.Offset
					if p.ErrorCode != 0 {
						code = p.ErrorCode
					}
				}
			}
		}
		for _, rt := range resp.Topics {
			for _, p := range rt.Partitions {
				found, at, code = true, p.Offset, p.ErrorCode
			}
		}
		if code == 0 {
			code = resp.ErrorCode
		}
		err = kerr.ErrorForCode(code)
		switch {
		case errors.Is(err, kerr.UnstableOffsetCommit) && time.Now().Before(deadline):
			time.Sleep(50 * time.Millisecond)
		case err != nil:
			return obj{"error": errName(err)}
		case !found:
			return nil
		default:
			return at
		}
	}
}

// txnOffsets: consume-transform-produce in a GroupTransactSession. Round 1 commits its
// output and, in the same transaction, its input offsets (TxnOffsetCommit, sent by End);
// round 2 aborts (End with TryAbort sends no offsets and rewinds the consumer).
func txnOffsets() obj {
	in, outTopic := topic+"-in", topic+"-out"
	adm := kadm.NewClient(newClient())
	createTopic(adm, in, 1, nil)
	createTopic(adm, outTopic, 1, nil)
	plain := plainClient()
	var inputs []out
	for i := 0; i < 6; i++ {
		inputs = append(inputs, out{0, "i" + strconv.Itoa(i)})
	}
	send(plain, in, inputs)
	plain.Close()
	s, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(bootstrap), kgo.ClientID("rill-diff-go"),
		kgo.TransactionalID(group+"-ctp"), kgo.TransactionTimeout(10*time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
	)
	check(err, "new transact session")
	res := obj{}
	for _, round := range []struct {
		name string
		end  kgo.TransactionEndTry
	}{{"round1", kgo.TryCommit}, {"round2", kgo.TryAbort}} {
		check(s.Begin(), "begin "+round.name)
		got, errs := take(s, 3)
		var consumed []int64
		var outs []out
		for _, r := range got {
			consumed = append(consumed, r.Offset)
			outs = append(outs, out{0, "out-" + string(r.Value)})
		}
		delivered := send(s.Client(), outTopic, outs)
		committed, err := s.End(ctxFor(30*time.Second), round.end)
		end := "commit"
		if round.end == kgo.TryAbort {
			end = "abort"
		}
		res[round.name] = obj{
			"end": end, "consumed": consumed, "consume_errors": errs, "delivered": delivered,
			"ended": fencedName(err), "committed": committed,
			"committed_after": committedOffset(s.Client(), in),
		}
	}
	s.Close()
	res["output_read_committed"] = readFromStart(outTopic, 1, kgo.ReadCommitted(), 3)
	res["output_read_uncommitted"] = readFromStart(outTopic, 1, kgo.ReadUncommitted(), 6)
	res["output_end_offsets"] = endOffsets(outTopic)
	return res
}

// ---- txn-fencing ----

// txnFencing: P2 initialises the transactional id P1 has a transaction open under (franz-go
// loads its producer id, InitProducerId, on ProducerID): P1 is fenced and its transaction
// aborted; P2's own transaction commits.
func txnFencing() obj {
	adm := kadm.NewClient(newClient())
	createTopic(adm, topic, 1, nil)
	res := obj{}
	p1 := txnClient("zombie")
	defer p1.Close()
	check(p1.BeginTransaction(), "p1 begin")
	res["p1_before"] = send(p1, topic, []out{{0, "p1-a"}})
	p2 := txnClient("zombie")
	defer p2.Close()
	_, _, err := p2.ProducerID(ctxFor(30 * time.Second))
	res["p2_init"] = fencedName(err)
	res["p1_send"] = send(p1, topic, []out{{0, "p1-b"}})
	res["p1_commit"] = endTxn(p1, kgo.TryCommit)
	check(p2.BeginTransaction(), "p2 begin")
	res["p2_delivered"] = send(p2, topic, []out{{0, "p2-a"}})
	res["p2_commit"] = endTxn(p2, kgo.TryCommit)
	res["read_committed"] = readFromStart(topic, 1, kgo.ReadCommitted(), 1)
	res["read_uncommitted"] = readFromStart(topic, 1, kgo.ReadUncommitted(), 2)
	res["end_offsets"] = endOffsets(topic)
	return res
}

// ---- txn-lso ----

// txnLSO: an open transaction holds read_committed readers back at its first record (the
// last stable offset), also from records written after it outside any transaction.
func txnLSO() obj {
	adm := kadm.NewClient(newClient())
	createTopic(adm, topic, 1, nil)
	res := obj{}
	plain := plainClient()
	defer plain.Close()
	res["before"] = send(plain, topic, []out{{0, "n0"}, {0, "n1"}})
	p := txnClient("open")
	defer p.Close()
	check(p.BeginTransaction(), "begin")
	res["open_txn"] = send(p, topic, []out{{0, "t0"}, {0, "t1"}})
	res["after_open"] = send(plain, topic, []out{{0, "n2"}})
	c := reader(topic, 1, kgo.ReadCommitted())
	defer c.Close()
	res["while_open"] = obj{
		"read_committed":   pollRecords(c, 3, blockedWait),
		"read_uncommitted": readFromStart(topic, 1, kgo.ReadUncommitted(), 5),
		"end_offsets":      endOffsets(topic),
	}
	res["commit"] = endTxn(p, kgo.TryCommit)
	res["after_commit"] = obj{
		"same_read_committed_consumer": pollRecords(c, 3, 20*time.Second),
		"end_offsets":                  endOffsets(topic),
	}
	return res
}
