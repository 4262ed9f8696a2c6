package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// MeshTLS is the mutual TLS of the inter-node connection (config
// cluster.tls): this node's certificate and key, shown both when it
// serves and when it dials, and the CA that must have signed every
// peer's. A peer is checked by the address it advertises, so a node's
// certificate must name its advertise host (an IP SAN for an IP).
func MeshTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls: cert_file %s, key_file %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster.tls.ca_file %s: no PEM certificate in it", caFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}
