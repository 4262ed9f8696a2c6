// Package jsonscan finds the ends of JSON values (RFC 8259) in a byte
// slice without decoding them, and walks the members of an object.
//
// It exists for the call path's hot spots, where encoding/json's
// reflection and allocations cost more than the rest of the work: the
// daemon's decoding of call requests and of agents' replies. Those fast
// paths accept only the plain shapes they expect, and hand anything else
// to encoding/json, which stays the reference; their fuzz tests check that
// both agree. Like encoding/json, it does not check that strings are valid
// UTF-8, and it limits nesting to 10000 levels.
package jsonscan
