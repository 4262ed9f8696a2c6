package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// endpointProbeEvery is how often each etcd member is asked for its
// status: a member cut off is out of the client's endpoints within about
// half the quorum timeout plus this.
const endpointProbeEvery = 250 * time.Millisecond

// maxMemberLag is how many entries a member may have left to apply,
// behind the highest commit index any member reported in the same probe,
// and still take requests: about a second of the demo's writes. A member
// back from a cut, or restarted, catches up from far behind, and every
// read it serves waits until it has applied up to the leader's index.
const maxMemberLag = 1000

// usableMembers are the endpoints whose member answered its status (st[i]
// not nil), knows a leader and has applied nearly all that is committed.
// When none is (no quorum), those that answered; when none answered, all
// of them: the quorum probe then says why.
func usableMembers(all []string, st []*clientv3.StatusResponse) []string {
	var committed uint64
	for _, s := range st {
		if s != nil {
			committed = max(committed, s.RaftIndex)
		}
	}
	var caughtUp, answered []string
	for i, ep := range all {
		s := st[i]
		if s == nil {
			continue
		}
		answered = append(answered, ep)
		if s.Leader != 0 && committed-min(committed, s.RaftAppliedIndex) <= maxMemberLag {
			caughtUp = append(caughtUp, ep)
		}
	}
	switch {
	case len(caughtUp) > 0:
		return caughtUp
	case len(answered) > 0:
		return answered
	}
	return all
}

// watchEndpoints keeps the etcd client's endpoints to the members that
// answer, know a leader and are caught up (usableMembers). The client
// spreads requests over its endpoints and fails over
// only on an error: a member cut off answers nothing, not even a reset,
// and the requests sent to it would hang until gRPC's keep-alive gives
// the connection up (5 s + 2 s, since etcd refuses pings more often). Each
// member is asked for its status on a connection of its own, within the
// half the quorum timeout; those that do not answer leave the endpoints until they
// do. With none answering all stay: the quorum probe then says why.
func (n *Node) watchEndpoints(ctx context.Context, all []string) {
	defer n.wg.Done()
	current := slices.Clone(all)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(endpointProbeEvery):
		}
		status := make([]*clientv3.StatusResponse, len(all))
		var wg sync.WaitGroup
		for i, ep := range all {
			wg.Go(func() {
				sctx, cancel := context.WithTimeout(ctx, n.opts.QuorumTimeout/2)
				defer cancel()
				if st, err := n.cli.Status(sctx, ep); err == nil {
					status[i] = st
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		live := usableMembers(all, status)
		if !slices.Equal(live, current) {
			n.log.Warn("cluster: etcd endpoints changed: members that do not answer, know no leader or lag behind are left out", "endpoints", live, "configured", all)
			n.cli.SetEndpoints(live...)
			var gone []string
			for _, ep := range current {
				if !slices.Contains(live, ep) {
					gone = append(gone, ep)
				}
			}
			current = live
			if len(gone) > 0 {
				// Requests in flight may be on the dropped members'
				// connections, where nothing will answer them.
				n.memberDropped(fmt.Errorf("%w: %v; the request was given up, try again", ErrMemberDropped, gone))
			}
		}
	}
}
