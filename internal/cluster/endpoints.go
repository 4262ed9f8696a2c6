package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// endpointProbeEvery is how often each etcd member is asked for its
// status: a member cut off is out of the client's endpoints within about
// half the quorum timeout plus this.
const endpointProbeEvery = 250 * time.Millisecond

// watchEndpoints keeps the etcd client's endpoints to the members that
// answer. The client spreads requests over its endpoints and fails over
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
		answered := make([]bool, len(all))
		var wg sync.WaitGroup
		for i, ep := range all {
			wg.Go(func() {
				sctx, cancel := context.WithTimeout(ctx, n.opts.QuorumTimeout/2)
				defer cancel()
				_, err := n.cli.Status(sctx, ep)
				answered[i] = err == nil
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		var live []string
		for i, ep := range all {
			if answered[i] {
				live = append(live, ep)
			}
		}
		if len(live) == 0 {
			live = all
		}
		if !slices.Equal(live, current) {
			n.log.Warn("cluster: etcd endpoints changed: members that do not answer are left out", "endpoints", live, "configured", all)
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
