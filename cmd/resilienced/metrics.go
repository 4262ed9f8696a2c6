package main

import (
	"github.com/resilienced/resilienced/internal/metrics"
)

// ArbiterPools implements metrics.ArbiterSource; nothing when the Arbiter
// is off.
func (m metricsSource) ArbiterPools() []metrics.ArbiterPool {
	w := m.d.arb.Load()
	if w == nil {
		return nil
	}
	var out []metrics.ArbiterPool
	for _, ls := range w.arb.Live() {
		out = append(out, metrics.ArbiterPool{Pool: ls.Pool, Acted: ls.Acted, HeldOut: ls.HeldOut,
			CameTrue: ls.CameTrue, FalseAlarms: ls.FalseAlarms, MaxRisk: ls.MaxRisk})
	}
	// Every pool has the series from its start, so that rates and alerts
	// see the counters' first increments.
	seen := make(map[string]bool, len(out))
	for _, p := range out {
		seen[p.Pool] = true
	}
	for _, p := range m.d.sup.Status() {
		if !seen[p.Name] {
			out = append(out, metrics.ArbiterPool{Pool: p.Name})
		}
	}
	return out
}

// PoolTelemetry implements metrics.TelemetrySource: each pool's agents'
// latest samples, summed.
func (m metricsSource) PoolTelemetry() []metrics.PoolTelemetry {
	as, err := m.d.sup.Agents("")
	if err != nil {
		return nil
	}
	byPool := map[string]*metrics.PoolTelemetry{}
	var out []*metrics.PoolTelemetry
	for _, p := range m.d.sup.Status() {
		pt := &metrics.PoolTelemetry{Pool: p.Name}
		byPool[p.Name] = pt
		out = append(out, pt)
	}
	for _, a := range as {
		pt := byPool[a.Pool]
		st, ok := m.d.tel.Latest(a.ID)
		if pt == nil || !ok {
			continue
		}
		if st.HaveProc {
			pt.RSSBytes += float64(st.Proc.RSSBytes)
		}
		if st.HaveRates {
			pt.SyscallsPerSec += st.Rates.SyscallsPerSec
			pt.SyscallErrorsPerSec += st.Rates.ErrorsPerSec
			pt.RxBytesPerSec += st.Rates.RxBytesPerSec
			pt.TxBytesPerSec += st.Rates.TxBytesPerSec
			pt.RetransmitsPerSec += st.Rates.RetransmitsPerSec
		}
	}
	res := make([]metrics.PoolTelemetry, len(out))
	for i, pt := range out {
		res[i] = *pt
	}
	return res
}
