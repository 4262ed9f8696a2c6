package main

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/resilienced/resilienced/internal/config"
)

// configPage is resilienced.yaml(5), the configuration reference. Its key
// list comes from config.Reference, the table docs/CONFIG.md is generated
// from too, so the page, the docs and the loader cannot disagree.
func (m manWriter) configPage() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, ".TH %q %q %q %q %q\n", "RESILIENCED.YAML", "5", m.date.Format("2006-01-02"), m.source, "resilienced manual")
	b.WriteString(".nh\n.ad l\n")
	b.WriteString(".SH NAME\nresilienced.yaml \\- configuration file of resilienced\n")
	b.WriteString(".SH SYNOPSIS\n.B /etc/resilienced/resilienced.yaml\n")
	b.WriteString(".SH DESCRIPTION\n")
	paragraphs(&b, `One YAML document configures the pools of agents that resilienced(8) supervises, the supervision groups over them, and the daemon's socket, state directory, metrics address, spawn budget and mesh. resilienced --config FILE --check validates a file; SIGHUP (systemctl reload resilienced) applies it: new pools start, removed ones stop, changed ones roll agent by agent. An invalid file is refused and the running configuration kept.

Every problem is reported at once, with the file, line, column and key path. Unknown and duplicate keys, wrong types and bad values are errors. Top-level keys starting with x- are ignored, a place for YAML anchors; aliases and << merges work. A key left out or set to null has its default.

Durations are Go durations: 500ms, 2s, 5m, 24h. Sizes are bytes, as an integer or with a unit: B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000).`)
	b.WriteString(".SH VERSIONS\n")
	paragraphs(&b, fmt.Sprintf(`The top-level version key gives the format of the file; this build reads version %d. A file without it is read as version 1, the format that had no key, so older files keep working; new files should say version: %d. A version this build does not know is refused, with nothing else checked. When the format changes, the version grows and older files are migrated as they are read.`, config.CurrentVersion, config.CurrentVersion))
	b.WriteString(".SH KEYS\n")
	paragraphs(&b, "[] stands for any element of a list.")
	for _, f := range config.Reference {
		b.WriteString(".TP\n")
		fmt.Fprintf(&b, "\\fB%s\\fR (%s)\n", roffEscape(f.Key), manText(f.Type+manDefault(f.Default)))
		b.WriteString(guardLine(manText(strings.ReplaceAll(f.Doc, "`", ""))) + "\n")
	}
	b.WriteString(".SH EXAMPLES\n.nf\n")
	for _, l := range strings.Split(strings.TrimSpace(`
version: 1
pools:
  - name: answer
    command: [/usr/local/bin/my-agent, --model, small]
    replicas: 2
    spares: 1
    contract:
      schema: {type: object, required: [answer]}
      deadline: 30s
`), "\n") {
		b.WriteString(roffLine(l) + "\n")
	}
	b.WriteString(".fi\n")
	b.WriteString(".SH SEE ALSO\n\\fBresilienced\\fR(8), \\fBresilientctl\\fR(1)\n")
	return b.Bytes()
}

// manDefault turns a Reference default into the tail of a key's heading:
// ", required", ", default 5s" or ", default 0; 2 × CPUs".
func manDefault(d string) string {
	switch d {
	case "", "none":
		return ""
	case "required":
		return ", required"
	}
	val, note, ok := strings.Cut(d, " (")
	if ok {
		return ", default " + val + "; " + strings.TrimSuffix(note, ")")
	}
	return ", default " + d
}

// manText escapes text for roff, the one non-ASCII character of the
// reference included, which not every man setup reads as UTF-8.
func manText(s string) string {
	return strings.ReplaceAll(roffEscape(s), "×", `\(mu`)
}
