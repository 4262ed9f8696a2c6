package chaos

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes the report as one self-contained HTML page (no network
// needed): the gate's verdict, the recovery-time distribution of each fault
// kind as an SVG chart against the gate, and the tables of kinds, calls and
// injections.
func WriteHTML(w io.Writer, r *Report) error {
	return pageTemplate.Execute(w, newPage(r))
}

type page struct {
	R        *Report
	Title    string
	Duration string
	Injected int
	Chart    template.HTML
	Kinds    []kindRow
	Calls    []kv
	Rate     string
	RateOK   bool
	Bound    string
	Rows     []injRow
}

type kv struct{ K, V string }

type kindRow struct {
	Kind, Describe, Injected, Recovered, Detect, Recover, Verdict string
	OK                                                            bool
	Notes                                                         []string
}

type injRow struct {
	At, Kind, Agent, Onset, Detect, Recover, Cause, How, Reason string
	OK                                                          bool
}

func newPage(r *Report) *page {
	p := &page{R: r, Bound: fmtMS(r.Gate.BoundMS)}
	p.Title = fmt.Sprintf("Chaos report: %s", r.Target)
	p.Duration = r.Ended.Sub(r.Started).Round(100 * time.Millisecond).String()
	for _, k := range r.Faults {
		p.Injected += k.Injected
		row := kindRow{
			Kind: string(k.Kind), Describe: k.Kind.Describe(),
			Injected: fmt.Sprint(k.Injected), Recovered: fmt.Sprint(k.Recovered),
			Detect: fmtSummary(k.DetectMS), Recover: fmtSummary(k.RecoverMS), OK: true, Verdict: "pass",
			Notes: k.Notes,
		}
		switch {
		case k.Unsupported != "":
			row.OK, row.Verdict = false, "not supported here: "+k.Unsupported
		case k.Injected == 0:
			row.OK, row.Verdict = false, "not injected"
		case k.Recovered < k.Injected:
			row.OK, row.Verdict = false, fmt.Sprintf("%d did not recover", k.Injected-k.Recovered)
		case k.RecoverMS != nil && k.RecoverMS.P99 > r.Gate.BoundMS:
			row.OK, row.Verdict = false, fmt.Sprintf("p99 %s over %s", fmtMS(k.RecoverMS.P99), p.Bound)
		}
		p.Kinds = append(p.Kinds, row)
	}
	c := r.Calls
	rate := c.SuccessRate()
	p.Rate = fmtRate(rate)
	p.RateOK = c.Failed == 0
	p.Calls = []kv{
		{"total", fmt.Sprint(c.Total)}, {"ok", fmt.Sprint(c.OK)},
		{"failed", fmt.Sprint(c.Failed)}, {"retried (more than one attempt)", fmt.Sprint(c.Retried)},
		{"success rate", p.Rate},
	}
	if c.LatencyMS != nil {
		p.Calls = append(p.Calls, kv{"latency p50 / p99 / max", fmtSummary(c.LatencyMS) + " ms"})
	}
	if r.BaselineMS != nil {
		p.Calls = append(p.Calls, kv{"baseline latency before the first fault, p50 / p99", fmt.Sprintf("%s / %s", fmtMS(r.BaselineMS.P50), fmtMS(r.BaselineMS.P99))})
	}
	for _, b := range c.By {
		p.Calls = append(p.Calls, kv{"made by", b})
	}
	for _, in := range r.Injections {
		row := injRow{
			At: in.At.Format("15:04:05.000"), Kind: string(in.Kind), Agent: in.Agent,
			Onset: optMS(in.OnsetMS), Detect: optMS(in.DetectMS), Recover: optMS(in.RecoverMS),
			Cause: in.Cause, How: in.How, Reason: in.Reason, OK: in.Recovered,
		}
		if in.Undo != "" {
			row.Reason = strings.TrimSpace(row.Reason + "; undo failed: " + in.Undo)
		}
		p.Rows = append(p.Rows, row)
	}
	p.Chart = template.HTML(recoveryChart(r))
	return p
}

func optMS(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmtMS(*v)
}

// axis maps milliseconds to x pixels, linear or logarithmic.
type axis struct {
	log      bool
	lo, hi   float64
	x0, x1   float64
	ticks    []float64
	overflow bool
}

func newAxis(values []float64, bound float64, x0, x1 float64) axis {
	a := axis{x0: x0, x1: x1}
	maxV, minV := bound, math.Inf(1)
	for _, v := range values {
		maxV = math.Max(maxV, v)
		if v > 0 {
			minV = math.Min(minV, v)
		}
	}
	if maxV <= 3*bound {
		a.hi = niceCeil(math.Max(bound*1.15, maxV*1.05))
		step := niceStep(a.hi / 6)
		for t := 0.0; t <= a.hi+step/1e6; t += step {
			a.ticks = append(a.ticks, t)
		}
		return a
	}
	// Values far beyond the gate would crush everything else to the left:
	// a log scale shows both.
	a.log = true
	if math.IsInf(minV, 1) {
		minV = 0.1
	}
	a.lo = math.Pow(10, math.Floor(math.Log10(math.Min(minV, bound))))
	a.lo = math.Max(a.lo, 0.01)
	a.hi = math.Pow(10, math.Ceil(math.Log10(maxV*1.01)))
	for t := a.lo; t <= a.hi*1.0001; t *= 10 {
		a.ticks = append(a.ticks, t)
	}
	return a
}

func (a axis) x(v float64) float64 {
	if a.log {
		v = math.Max(v, a.lo)
		return a.x0 + (a.x1-a.x0)*(math.Log10(v)-math.Log10(a.lo))/(math.Log10(a.hi)-math.Log10(a.lo))
	}
	return a.x0 + (a.x1-a.x0)*math.Min(v, a.hi)/a.hi
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func niceCeil(v float64) float64 {
	s := niceStep(v / 6)
	return math.Ceil(v/s) * s
}

func tickLabel(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	case v >= 1000 && math.Mod(v, 1000) == 0:
		return fmt.Sprintf("%gs", v/1000)
	}
	return fmt.Sprintf("%g", v)
}

// recoveryChart draws one row per fault kind: a dot per fault at its
// recovery time, a hollow dot at its detection time, p50 and p99 marks,
// and the gate as a dashed line.
func recoveryChart(r *Report) string {
	const (
		width  = 960.0
		left   = 130.0
		right  = 200.0
		top    = 58.0
		rowH   = 46.0
		bottom = 46.0
	)
	var values []float64
	for _, in := range r.Injections {
		if in.RecoverMS != nil {
			values = append(values, *in.RecoverMS)
		}
		if in.DetectMS != nil {
			values = append(values, *in.DetectMS)
		}
	}
	bound := r.Gate.BoundMS
	ax := newAxis(values, bound, left, width-right)
	height := top + rowH*float64(max(1, len(r.Faults))) + bottom
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" role="img" aria-label="recovery time per fault kind">`, width, height)
	b.WriteString(`<style>text{font:12px system-ui,-apple-system,"Segoe UI",sans-serif;fill:#24292f}.t{fill:#57606a;font-size:11px}.k{font-weight:600;font-size:13px}.bad{fill:#cf222e}.good{fill:#1a7f37}</style>`)
	// Grid and ticks.
	plotBottom := top + rowH*float64(max(1, len(r.Faults)))
	for _, t := range ax.ticks {
		x := ax.x(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d0d7de" stroke-width="1"/>`, x, top-6, x, plotBottom)
		fmt.Fprintf(&b, `<text class="t" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, plotBottom+16, tickLabel(t))
	}
	scale := "milliseconds from injection (leak, oom: from the OOM kill)"
	if ax.log {
		scale += ", log scale"
	}
	fmt.Fprintf(&b, `<text class="t" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, (left+width-right)/2, plotBottom+36, scale)
	// Rows.
	for i, k := range r.Faults {
		y := top + rowH*float64(i) + rowH/2
		if i%2 == 1 {
			fmt.Fprintf(&b, `<rect x="0" y="%.1f" width="%g" height="%g" fill="#f6f8fa"/>`, y-rowH/2, width, rowH)
		}
		fmt.Fprintf(&b, `<text class="k" x="12" y="%.1f">%s</text>`, y+4, html.EscapeString(string(k.Kind)))
		if k.Unsupported != "" {
			fmt.Fprintf(&b, `<text class="bad" x="%.1f" y="%.1f">not supported here: %s</text>`, left+8, y+4, html.EscapeString(truncate(k.Unsupported, 110)))
			continue
		}
		if k.Injected == 0 {
			fmt.Fprintf(&b, `<text class="bad" x="%.1f" y="%.1f">no fault injected</text>`, left+8, y+4)
			continue
		}
		// Detection (hollow) and recovery (filled) per fault, spread
		// vertically so that equal values stay visible.
		j := 0
		for _, in := range r.Injections {
			if in.Kind != k.Kind {
				continue
			}
			dy := (float64((j*7)%9) - 4) * 2.4
			j++
			if in.DetectMS != nil {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.2" fill="none" stroke="#8c959f" stroke-width="1.2"><title>%s detected in %s</title></circle>`, ax.x(*in.DetectMS), y+dy, html.EscapeString(in.Agent), fmtMS(*in.DetectMS))
			}
			if in.RecoverMS != nil && in.Recovered {
				color := "#0969da"
				if *in.RecoverMS > bound {
					color = "#cf222e"
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s" fill-opacity="0.7"><title>%s recovered in %s (%s)</title></circle>`, ax.x(*in.RecoverMS), y+dy, color, html.EscapeString(in.Agent), fmtMS(*in.RecoverMS), html.EscapeString(in.Cause))
			}
		}
		if s := k.RecoverMS; s != nil {
			x50, x99 := ax.x(s.P50), ax.x(s.P99)
			// Labels side by side when the marks are close.
			close := x99-x50 < 26
			for _, m := range []struct {
				x      float64
				label  string
				anchor string
				dx     float64
			}{{x50, "p50", "middle", 0}, {x99, "p99", "middle", 0}} {
				if close && m.label == "p50" {
					m.anchor, m.dx = "end", -3
				} else if close {
					m.anchor, m.dx = "start", 3
				}
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#24292f" stroke-width="2"/>`, m.x, y-15, m.x, y+15)
				fmt.Fprintf(&b, `<text class="t" x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, m.x+m.dx, y-17, m.anchor, m.label)
			}
		}
		// The verdict at the right.
		cls, verdict := "good", "p99 "+optSummaryP99(k.RecoverMS)
		switch {
		case k.Recovered < k.Injected:
			cls, verdict = "bad", fmt.Sprintf("%d of %d not recovered", k.Injected-k.Recovered, k.Injected)
		case k.RecoverMS != nil && k.RecoverMS.P99 > bound:
			cls = "bad"
		}
		fmt.Fprintf(&b, `<text class="%s" x="%.1f" y="%.1f">%s</text>`, cls, width-right+16, y+4, html.EscapeString(verdict))
	}
	// The gate.
	gx := ax.x(bound)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#cf222e" stroke-width="2" stroke-dasharray="6 4"/>`, gx, top-14, gx, plotBottom)
	fmt.Fprintf(&b, `<text class="bad" x="%.1f" y="%.1f" text-anchor="middle">gate %s</text>`, gx, top-18, fmtMS(bound))
	// Legend, above the plot.
	fmt.Fprintf(&b, `<circle cx="16" cy="14" r="4" fill="#0969da" fill-opacity="0.7"/><text class="t" x="26" y="18">recovery: the pool whole again and a call served</text>`)
	fmt.Fprintf(&b, `<circle cx="316" cy="14" r="3.2" fill="none" stroke="#8c959f" stroke-width="1.2"/><text class="t" x="326" y="18">detection: the supervisor acted</text>`)
	fmt.Fprintf(&b, `<circle cx="536" cy="14" r="4" fill="#cf222e" fill-opacity="0.7"/><text class="t" x="546" y="18">recovery slower than the gate</text>`)
	b.WriteString(`</svg>`)
	return b.String()
}

func optSummaryP99(s *Summary) string {
	if s == nil {
		return "-"
	}
	return fmtMS(s.P99)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

var pageTemplate = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
  :root { --ok:#1a7f37; --bad:#cf222e; --muted:#57606a; --line:#d0d7de; --bg2:#f6f8fa; }
  * { box-sizing: border-box; }
  body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:#24292f; margin:0; background:#fff; }
  main { max-width: 1040px; margin: 0 auto; padding: 28px 24px 60px; }
  h1 { font-size: 26px; margin: 0 0 4px; }
  h2 { font-size: 18px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
  .sub { color: var(--muted); margin: 0 0 20px; }
  .gate { border-radius: 10px; padding: 18px 22px; margin: 18px 0; border: 2px solid; }
  .gate.pass { border-color: var(--ok); background: #dafbe1; }
  .gate.fail { border-color: var(--bad); background: #ffebe9; }
  .gate .verdict { font-size: 22px; font-weight: 700; }
  .gate.pass .verdict { color: var(--ok); }
  .gate.fail .verdict { color: var(--bad); }
  .gate ul { margin: 8px 0 0; padding-left: 20px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; margin: 18px 0; }
  .card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  .card .n { font-size: 24px; font-weight: 700; font-variant-numeric: tabular-nums; }
  .card .l { color: var(--muted); font-size: 13px; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-size: 13px; color: var(--muted); font-weight: 600; }
  td.num { text-align: right; white-space: nowrap; }
  tr.bad td.verdict, .bad { color: var(--bad); font-weight: 600; }
  tr.ok td.verdict { color: var(--ok); font-weight: 600; }
  .desc { color: var(--muted); font-size: 13px; }
  .note { color: var(--muted); font-size: 13px; margin: 2px 0; }
  svg { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
  code, pre { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--bg2); border-radius: 6px; }
  pre { padding: 10px 12px; overflow-x: auto; white-space: pre-wrap; }
  details summary { cursor: pointer; color: #0969da; margin: 8px 0; }
  .aborted { border-left: 4px solid var(--bad); padding: 6px 12px; background: #fff8f7; }
  footer { color: var(--muted); font-size: 13px; margin-top: 40px; }
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p class="sub">pool <b>{{.R.Pool}}</b> · {{.R.Started.Format "2006-01-02 15:04:05 MST"}} · {{.Duration}} · {{.Injected}} faults injected · seed {{.R.Seed}}</p>

{{if .R.Gate.Passed}}
<div class="gate pass"><div class="verdict">PASS: every fault kind recovered with p99 under {{.Bound}}</div>
<div>and no call failed.</div></div>
{{else}}
<div class="gate fail"><div class="verdict">FAIL: unfit for production by the {{.Bound}} recovery gate</div>
<ul>{{range .R.Gate.Failures}}<li>{{.}}</li>{{end}}</ul></div>
{{end}}
{{if .R.Aborted}}<p class="aborted">The experiment was aborted: {{.R.Aborted}}. Every fault it injected was undone; what is below is what it measured until then.</p>{{end}}

<div class="cards">
  <div class="card"><div class="n">{{.R.Calls.Total}}</div><div class="l">calls during the experiment</div></div>
  <div class="card"><div class="n {{if not .RateOK}}bad{{end}}">{{.Rate}}</div><div class="l">calls that succeeded ({{.R.Calls.Failed}} failed)</div></div>
  <div class="card"><div class="n">{{.R.Calls.Retried}}</div><div class="l">calls retried on another agent</div></div>
  <div class="card"><div class="n">{{.Injected}}</div><div class="l">faults injected</div></div>
</div>
{{range .R.Notes}}<p class="note">Note: {{.}}</p>{{end}}

<h2>Recovery time per fault kind</h2>
<p class="desc">Each filled dot is one fault: the time from its injection until the pool was back at full strength and served a call. Hollow dots are when the supervisor acted. The bars mark p50 and p99; the dashed line is the gate.</p>
{{.Chart}}

<h2>Fault kinds</h2>
<table>
<tr><th>kind</th><th class="num">injected</th><th class="num">recovered</th><th class="num">detect ms<br>p50 / p99 / max</th><th class="num">recover ms<br>p50 / p99 / max</th><th>gate {{.Bound}}</th></tr>
{{range .Kinds}}<tr class="{{if .OK}}ok{{else}}bad{{end}}"><td><b>{{.Kind}}</b><div class="desc">{{.Describe}}</div>{{range .Notes}}<div class="note">{{.}}</div>{{end}}</td><td class="num">{{.Injected}}</td><td class="num">{{.Recovered}}</td><td class="num">{{.Detect}}</td><td class="num">{{.Recover}}</td><td class="verdict">{{.Verdict}}</td></tr>
{{end}}</table>

<h2>Calls</h2>
<table>
{{range .Calls}}<tr><th>{{.K}}</th><td class="num">{{.V}}</td></tr>
{{end}}</table>
{{with .R.Calls.Errors}}<p class="bad">Errors of failed calls:</p><ul>{{range .}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}

<h2>Every fault</h2>
<details><summary>{{len .Rows}} injections</summary>
<table>
<tr><th>at</th><th>kind</th><th>agent</th><th class="num">onset</th><th class="num">detect</th><th class="num">recover</th><th>cause</th><th>how / why</th></tr>
{{range .Rows}}<tr class="{{if .OK}}ok{{else}}bad{{end}}"><td>{{.At}}</td><td>{{.Kind}}</td><td>{{.Agent}}</td><td class="num">{{.Onset}}</td><td class="num">{{.Detect}}</td><td class="num">{{.Recover}}</td><td>{{.Cause}}</td><td>{{.How}}{{if .Reason}} <span class="desc">{{.Reason}}</span>{{end}}</td></tr>
{{end}}</table>
</details>

<h2>Replay</h2>
<p class="desc">The same seed makes the same choices (order of kinds, targets, fault randomness):</p>
<pre>{{.R.Replay}}</pre>

<footer>Generated by resilienced's chaos engine. Every number on this page was measured in this run; a measurement with no samples is shown as "-".</footer>
</main>
</body>
</html>
`))
