package ring

import "testing"

// xxh64Vectors[n] is XXH64(seed 0) of the first n bytes of xxh64Text, as
// printed by the reference implementation (xxhsum -H1, xxHash 0.8.1).
// Lengths 0..70 cover every path: the 32-byte stripes, 8- and 4-byte words
// and single bytes.
const xxh64Text = "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ"

var xxh64Vectors = []uint64{
	0xef46db3751d8e999, 0x5b4d6af247a3cf7b, 0x4d9dd5b2d0613c90, 0x4108f90b5de14d15,
	0xcdf13a49d263200f, 0xf0d7a3adcfa8c683, 0x645e5d666ac3e66d, 0xc6fce9d72e310949,
	0xd07b38a78a153b0b, 0x9d1214db001dfc69, 0xdb3919475ab1cf22, 0x61cbdf23c67af875,
	0xb2ed38017844f789, 0xed6dc8c5841a51e4, 0x5e5ddb1fae229e50, 0x59bf1a33358c7d98,
	0x0f7e67014943a311, 0x6bf87c8b1fd9ed1a, 0xa2d31bb8d44b0557, 0xc9b4e7b3c328d9e0,
	0x457cd2650fe6aa94, 0x3c5831248b534326, 0x645c543cb504efad, 0xb91f8b1617c11212,
	0xe5bcc54f9811d5de, 0x1eb61388311e1536, 0x54ad75ab2f5cbf06, 0x425f794b47c2bd48,
	0x1dcd16dd15317465, 0x2fca2d55fcc6c2cf, 0xcbd47a9c2bf5830b, 0x3f8d95ab32c127d9,
	0xe2bbc9136629a4ee, 0x6d92fe2ebab7db31, 0x20c50c763d3e7180, 0x2d27cba0d24872de,
	0x9457ee2b0cace793, 0x675af3b6c6f51195, 0xb3e5ae9ec090534c, 0xe01509ec7bdd4b5e,
	0x581a9e84f2ab44ef, 0x9d60cef4bf4427b0, 0xab06bcadc103bf7d, 0x0b242d361fda71bc,
	0x44ad33705751ad73, 0x4e3f771fa5fc96ce, 0x44c67fbc806abd33, 0x7f37b9bae64e38e2,
	0x66dfaa2fd7e76d1a, 0xa21296a626d0b2d8, 0xdceff8203956c7f6, 0xc97ee202a680a649,
	0x8ac558832bf0ec64, 0x7061e51535b82308, 0x1616b91c7ff4c18f, 0x08f89107164f6f9b,
	0xfb8dc9a3a6758687, 0xc729679598879c02, 0xe71f9d63f88111f2, 0x9ff452269acbfa80,
	0x02787cb5e2d47352, 0x1e14260c6d5f67be, 0xe7408ab4348bcb07, 0x1796a8a24ef87cf4,
	0xc2694faf4d77ae63, 0xb4c430e325d877e1, 0x7a0357234ad7cb18, 0xad9c00dad80dfd6c,
	0x81f57ae797d97f9b, 0xad2937036d6c67ea, 0xd8852f73a84ddf39,
}

func TestXXH64MatchesReference(t *testing.T) {
	for n, want := range xxh64Vectors {
		if got := xxh64([]byte(xxh64Text[:n])); got != want {
			t.Errorf("xxh64(%q) = %#016x, want %#016x", xxh64Text[:n], got, want)
		}
	}
	// A longer input from the python-xxhash documentation.
	if got, want := xxh64([]byte("Nobody inspects the spammish repetition")), uint64(0xfbcea83c8a378bf1); got != want {
		t.Errorf("xxh64(spammish) = %#016x, want %#016x", got, want)
	}
}

func TestStringBytesHashesLikeCopy(t *testing.T) {
	for n := range len(xxh64Text) + 1 {
		s := xxh64Text[:n]
		if xxh64(stringBytes(s)) != xxh64([]byte(s)) {
			t.Fatalf("stringBytes(%q) hashes differently from a copy", s)
		}
	}
}
