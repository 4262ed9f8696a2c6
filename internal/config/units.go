package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// sizeUnits are the suffixes a size may carry. Binary units are the ones
// cgroups and the kernel speak; the decimal ones are accepted because people
// write them, and mean exactly what they say.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so that "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize parses a byte count: a non-negative integer, optionally followed
// by B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of
// 1000), with or without a space. A bare K, M, G or T is refused because it
// is ambiguous between the two.
func ParseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
	unit := s[len(num):]
	num = strings.TrimSpace(num)
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a size (e.g. 4096, 64KiB, 512MiB, 1GiB)", s)
	}
	mult := int64(0)
	if unit == "" {
		mult = 1
	}
	for _, u := range sizeUnits {
		if unit == u.suffix {
			mult = u.mult
			break
		}
	}
	if mult == 0 {
		switch strings.ToUpper(unit) {
		case "K", "M", "G", "T":
			u := strings.ToUpper(unit)
			return 0, fmt.Errorf("%q is not a size: %q is ambiguous, write %q or %q", s, unit, u+"iB", u+"B")
		}
		return 0, fmt.Errorf("%q is not a size: unknown unit %q (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)", s, unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// FormatSize formats a byte count in the largest binary unit that divides
// it exactly, so that FormatSize(1<<20) is "1MiB" and FormatSize(1000) is
// "1000B".
func FormatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// AllowRule is one parsed entry of a pool's network.allow list: traffic to
// Prefix, on Port only when Port is not 0.
type AllowRule struct {
	Prefix netip.Prefix
	Port   uint16
}

// String formats the rule the way it is written in the configuration.
func (r AllowRule) String() string {
	if r.Port == 0 {
		return r.Prefix.String()
	}
	return r.Prefix.String() + ":" + strconv.Itoa(int(r.Port))
}

var errNotAllowRule = errors.New(`want a CIDR or CIDR:port, e.g. "10.0.0.0/8" or "127.0.0.1/32:8080"`)

// ParseAllowRule parses a network.allow entry: a CIDR, optionally followed by
// ":port". The port follows the prefix length, so IPv6 needs no brackets:
// "fd00::/8:443". The prefix must be canonical (no host bits set), so that
// what is written is what is enforced.
func ParseAllowRule(s string) (AllowRule, error) {
	slash := strings.LastIndexByte(s, '/')
	if slash < 0 {
		return AllowRule{}, fmt.Errorf("%q is not a CIDR: %w", s, errNotAllowRule)
	}
	cidr, port, hasPort := strings.Cut(s[slash:], ":")
	cidr = s[:slash] + cidr
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return AllowRule{}, fmt.Errorf("%q is not a CIDR: %w", s, errNotAllowRule)
	}
	if p != p.Masked() {
		return AllowRule{}, fmt.Errorf("%q has host bits set: write %q", s, p.Masked().String()+s[len(cidr):])
	}
	r := AllowRule{Prefix: p}
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return AllowRule{}, fmt.Errorf("%q: port %q is not a number in 1..65535", s, port)
		}
		r.Port = uint16(n)
	}
	return r, nil
}
