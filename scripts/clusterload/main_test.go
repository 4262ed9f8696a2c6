package main

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func rec(epoch, rev int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Value: fmt.Appendf(nil, `{"epoch":%d}`, epoch), ModRevision: rev}
}

// TestStaleCommits checks the demo's check of fencing: a commit under an
// epoch that a newer one had replaced is counted, whether it wrote a new
// seq after the new owner's or overwrote one of them, or came after the
// owner record was rewritten with no exchange of the new owner yet.
func TestStaleCommits(t *testing.T) {
	for _, c := range []struct {
		name     string
		kvs      []*mvccpb.KeyValue
		ownerRev int64
		want     int64
	}{
		{"one owner", []*mvccpb.KeyValue{rec(10, 11), rec(10, 12), rec(10, 13)}, 10, 0},
		{"a takeover", []*mvccpb.KeyValue{rec(10, 11), rec(10, 12), rec(20, 21), rec(20, 22)}, 20, 0},
		{"the old owner writes after the new one", []*mvccpb.KeyValue{rec(10, 11), rec(20, 21), rec(10, 25)}, 20, 1},
		{"the old owner overwrites the new one's seq", []*mvccpb.KeyValue{rec(10, 11), rec(10, 25), rec(20, 26)}, 20, 1},
		{"after the owner record changed, before any new exchange", []*mvccpb.KeyValue{rec(10, 11), rec(10, 31)}, 30, 1},
		{"the record taken again by its own node", []*mvccpb.KeyValue{rec(10, 11), rec(30, 31)}, 30, 0},
	} {
		if got := staleCommits(c.kvs, c.ownerRev); got != c.want {
			t.Errorf("%s: %d stale, want %d", c.name, got, c.want)
		}
	}
}
