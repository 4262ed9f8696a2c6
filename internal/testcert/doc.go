// Package testcert makes a throwaway certificate authority and
// certificates it signs, written as PEM files, for tests of TLS paths
// (the cluster mesh's mutual TLS). Never for production use: the keys
// live in a test's temporary directory and expire within the hour.
package testcert
