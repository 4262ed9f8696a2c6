package config

import (
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

// BenchmarkParse parses the full example. The baseline beside it is yaml.v3
// alone building the node tree that Parse walks, so the difference is the
// cost of the walk, the defaults and the validation (schema compile
// included).
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline=yaml.v3-node", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var n yaml.Node
			if err := yaml.Unmarshal(data, &n); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parse", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := Parse("full.yaml", data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
