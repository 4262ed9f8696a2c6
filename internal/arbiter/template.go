package arbiter

import (
	"strings"
	"unicode/utf8"
)

// Masks that replace the variable parts of a log line.
const (
	MaskNumber = "<num>"
	MaskHex    = "<hex>"
	MaskUUID   = "<uuid>"
	MaskID     = "<id>"
	MaskString = "<str>"
)

// maxTemplateInput bounds the bytes of a line that are templated: the cost
// stays fixed and a line with a huge payload still gets its prefix's
// template.
const maxTemplateInput = 512

// Template reduces a log line to its template: quoted strings, numbers
// (with an optional short unit: 250ms, 4MiB), hex, UUIDs and identifiers
// containing digits are masked, so "conn 17 to 10.0.0.3 reset after 250ms"
// and "conn 4 to 10.0.0.9 reset after 31ms" share the template
// "conn <num> to <num> reset after <num>ms". The result never contains an
// ASCII digit. Lines longer than 512 bytes are cut first.
func Template(line string) string {
	if len(line) > maxTemplateInput {
		cut := maxTemplateInput
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut]
	}
	var b strings.Builder
	b.Grow(len(line) + 8)
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			// A single quote opens a string only after a non-word byte,
			// so "can't" stays a word. The byte looked at is the one
			// written, so that templating a template changes nothing.
			if c == '\'' && b.Len() > 0 && isWordByte(b.String()[b.Len()-1]) {
				b.WriteByte(c)
				i++
				continue
			}
			if end := closingQuote(line, i); end > 0 {
				b.WriteByte(c)
				b.WriteString(MaskString)
				b.WriteByte(c)
				i = end + 1
				continue
			}
			b.WriteByte(c)
			i++
		case isWordByte(c):
			j := i
			for j < len(line) && (isWordByte(line[j]) || line[j] == '.' || line[j] == '-') {
				j++
			}
			// Trailing punctuation is not part of the token ("done.").
			for j > i+1 && (line[j-1] == '.' || line[j-1] == '-') {
				j--
			}
			maskToken(&b, line[i:j])
			i = j
		case c == '-' && i+1 < len(line) && isDigit(line[i+1]) && (i == 0 || !isWordByte(line[i-1])):
			// A sign belongs to the number that follows.
			b.WriteByte('-')
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

func closingQuote(s string, open int) int {
	q := s[open]
	for j := open + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j
		}
	}
	return -1
}

func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isHexByte(c byte) bool  { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }
func isAlpha(c byte) bool    { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isWordByte(c byte) bool { return isDigit(c) || isAlpha(c) || c == '_' }

// maskToken writes tok (a run of word bytes, dots and dashes) with its
// variable parts masked.
func maskToken(b *strings.Builder, tok string) {
	if strings.IndexFunc(tok, func(r rune) bool { return r >= '0' && r <= '9' }) < 0 {
		b.WriteString(tok)
		return
	}
	switch {
	case isUUID(tok):
		b.WriteString(MaskUUID)
		return
	case len(tok) > 2 && tok[0] == '0' && tok[1]|0x20 == 'x' && allHex(tok[2:]):
		b.WriteString(MaskHex)
		return
	case isNumber(tok):
		b.WriteString(MaskNumber)
		return
	}
	if n := numberPrefix(tok); n > 0 && len(tok)-n <= 4 && allAlpha(tok[n:]) {
		// A number with a unit: 250ms, 4MiB, 3s.
		b.WriteString(MaskNumber)
		b.WriteString(tok[n:])
		return
	}
	if len(tok) >= 8 && allHex(tok) {
		b.WriteString(MaskHex)
		return
	}
	// Mixed identifiers: mask each part with a digit, keep the words
	// between, so worker-42 and worker-7 share "worker-<num>".
	start := 0
	for i := 0; i <= len(tok); i++ {
		if i < len(tok) && tok[i] != '.' && tok[i] != '-' && tok[i] != '_' {
			continue
		}
		part := tok[start:i]
		switch {
		case part == "":
		case allDigits(part):
			b.WriteString(MaskNumber)
		case strings.ContainsAny(part, "0123456789"):
			if len(part) >= 6 && allHex(part) {
				b.WriteString(MaskHex)
			} else {
				b.WriteString(MaskID)
			}
		default:
			b.WriteString(part)
		}
		if i < len(tok) {
			b.WriteByte(tok[i])
		}
		start = i + 1
	}
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func allAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlpha(s[i]) {
			return false
		}
	}
	return s != ""
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHexByte(s[i]) {
			return false
		}
	}
	return true
}

// numberPrefix is the length of the decimal number tok starts with: digits
// with dots between (1, 2.5, 10.0.0.3) and an optional exponent.
func numberPrefix(tok string) int {
	i := 0
	for i < len(tok) {
		j := i
		for j < len(tok) && isDigit(tok[j]) {
			j++
		}
		if j == i {
			break
		}
		i = j
		if i+1 < len(tok) && tok[i] == '.' && isDigit(tok[i+1]) {
			i++
			continue
		}
		break
	}
	if i > 0 && i+1 < len(tok) && tok[i]|0x20 == 'e' {
		j := i + 1
		if tok[j] == '-' || tok[j] == '+' {
			j++
		}
		if j < len(tok) && isDigit(tok[j]) {
			for j < len(tok) && isDigit(tok[j]) {
				j++
			}
			i = j
		}
	}
	return i
}

func isNumber(tok string) bool {
	n := numberPrefix(tok)
	return n > 0 && n == len(tok)
}

// rarityScale sets how fast a template stops being rare: its rarity is
// rarityScale/(rarityScale+seen).
const rarityScale = 20

// Templater counts templates of the log lines of one pool, so that a line
// can be scored by how rare its template is there. It keeps at most
// MaxTemplates templates, forgetting the least recently seen. It is not
// safe for concurrent use; the [Arbiter] guards its own.
type Templater struct {
	// MaxTemplates bounds the table (default 1024).
	MaxTemplates int

	stats map[string]*templateStat
	tick  uint64
}

type templateStat struct {
	count uint64
	last  uint64
}

// NewTemplater returns a Templater that keeps at most maxTemplates
// templates (0 means the default).
func NewTemplater(maxTemplates int) *Templater {
	return &Templater{MaxTemplates: maxTemplates, stats: make(map[string]*templateStat)}
}

// Observe templates line, counts it and returns the template with its
// rarity before this line: 1 for a template never seen, falling towards 0
// as it becomes common.
func (t *Templater) Observe(line string) (template string, rarity float64) {
	template = Template(line)
	if t.stats == nil {
		t.stats = make(map[string]*templateStat)
	}
	t.tick++
	st, ok := t.stats[template]
	if !ok {
		t.evict()
		st = &templateStat{}
		t.stats[template] = st
	}
	rarity = rarityScale / (rarityScale + float64(st.count))
	st.count++
	st.last = t.tick
	return template, rarity
}

// Count is how often template has been seen (0 if unknown or forgotten).
func (t *Templater) Count(template string) uint64 {
	if st, ok := t.stats[template]; ok {
		return st.count
	}
	return 0
}

// Len is the number of templates held.
func (t *Templater) Len() int { return len(t.stats) }

func (t *Templater) evict() {
	limit := t.MaxTemplates
	if limit <= 0 {
		limit = 1024
	}
	for len(t.stats) >= limit {
		var oldest string
		var oldestTick uint64 = ^uint64(0)
		for k, st := range t.stats {
			if st.last < oldestTick {
				oldest, oldestTick = k, st.last
			}
		}
		delete(t.stats, oldest)
	}
}
