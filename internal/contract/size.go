package contract

import "strconv"

// humanSize formats n bytes for a person: "512 B", "4 KiB", "2.1 MiB".
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	suffix := "B"
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		if f < unit {
			break
		}
		f /= unit
		suffix = s
	}
	// One decimal, dropped when it is zero: "1 MiB", "2.1 MiB".
	s := strconv.FormatFloat(f, 'f', 1, 64)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return s + " " + suffix
}

// sizePair formats "2.1 MiB, limit 1 MiB", adding exact byte counts when
// rounding would make the two look equal.
func sizePair(size, limit int64) string {
	s, l := humanSize(size), humanSize(limit)
	if s == l {
		s += " (" + strconv.FormatInt(size, 10) + " bytes)"
		l += " (" + strconv.FormatInt(limit, 10) + " bytes)"
	}
	return s + ", limit " + l
}
