package main

import (
	"net/http"

	"github.com/resilienced/resilienced/internal/api"
)

// callsRoute serves GET /v1/calls: every pool's call counters by outcome
// and the latency histogram of its successful calls since the daemon
// started, which `resilientctl top` turns into calls/s and p99 between two
// reads (the same figures as the Prometheus metrics, without needing
// metrics_addr).
func (d *daemon) callsRoute(s *api.Server) {
	s.Handle("GET /v1/calls", func(rw http.ResponseWriter, r *http.Request) {
		cs, err := d.metrics.CallStats()
		if err != nil {
			api.WriteError(rw, &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: err.Error()})
			return
		}
		api.WriteJSON(rw, http.StatusOK, cs)
	})
}
