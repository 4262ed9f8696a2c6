//go:build !linux

package ring

// threadCPU is not measured off Linux; the cpu-ns/op figures read 0.
func threadCPU() int64 { return 0 }
