package config

// Suggest returns the word in words closest to an unknown one, if it is
// close enough to be a typo: at most two edits, and fewer than half the
// word. "" when none is. Other packages use it for their own names (fault
// kinds), so that every "did you mean" in the project agrees.
func Suggest(key string, keys []string) string { return suggest(key, keys) }

func suggest(key string, keys []string) string {
	best, bestDist := "", 3
	for _, k := range keys {
		d := editDistance(key, k)
		if d < bestDist && 2*d < max(len(key), len(k)) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes (keys
// are ASCII).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // no key is that long; spare the quadratic work
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
