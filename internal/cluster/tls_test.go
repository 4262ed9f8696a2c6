package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/cluster/etcdtest"
	"github.com/resilienced/resilienced/internal/testcert"
)

// TestMeshMutualTLS: with cluster.tls the nodes forward calls to each
// other over TLS; a client without a certificate the cluster's CA signed
// is refused in the handshake, token or not, and so is plain h2c.
func TestMeshMutualTLS(t *testing.T) {
	dir := testcert.CA(t, []string{"a", "b"})
	stranger := testcert.CA(t, []string{"x"}) // another CA's certificate
	withTLS := func(name string) func(*MeshOptions) {
		return func(o *MeshOptions) {
			cfg, err := MeshTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"))
			if err != nil {
				t.Fatal(err)
			}
			o.TLS = cfg
		}
	}
	srv := etcdtest.Start(t)
	a, b := startMesh(t, srv, "a", withTLS("a")), startMesh(t, srv, "b", withTLS("b"))
	eventually(t, "b has a TLS connection to a", func() bool { return !b.mesh.PeerDead("a") })
	call(t, a.mesh, "s", 1)
	for i := 2; i <= 3; i++ {
		if res := call(t, b.mesh, "s", i); res.Agent != "a" {
			t.Fatalf("call %d through b served by %s, want the owner a over TLS", i, res.Agent)
		}
	}

	ping := func(c *http.Client, scheme string) error {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, scheme+a.ln.Addr().String()+"/cluster/v1/ping", nil)
		req.Header.Set("Authorization", "Bearer "+string(testToken))
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%w: %s", errAnswered, resp.Status)
		}
		return nil
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool.AppendCertsFromPEM(caPEM)
	xCert, err := tls.LoadX509KeyPair(filepath.Join(stranger, "x.pem"), filepath.Join(stranger, "x.key"))
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{
		"no client certificate":    {RootCAs: pool},
		"another CA's certificate": {RootCAs: pool, Certificates: []tls.Certificate{xCert}},
	} {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
		// Refused in the handshake: with TLS 1.3 the client may learn it
		// from the server's alert or only as its request's write fails.
		if err := ping(c, "https://"); err == nil || errors.Is(err, errAnswered) {
			t.Errorf("%s, with the token: %v, want the connection refused before any HTTP answer", name, err)
		}
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &protos}}
	if err := ping(c, "http://"); err == nil {
		t.Errorf("plain h2c to a TLS mesh was answered")
	}
	// Its own certificate, as a peer presents it: answered.
	cfg, _ := MeshTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "b.pem"), filepath.Join(dir, "b.key"))
	c = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	if err := ping(c, "https://"); err != nil {
		t.Errorf("a peer's certificate: %v", err)
	}
}

// errAnswered: the mesh answered a request with an HTTP status.
var errAnswered = errors.New("answered")

func TestMeshTLSErrors(t *testing.T) {
	dir := testcert.CA(t, []string{"a"})
	if _, err := MeshTLS(filepath.Join(dir, "nope.pem"), filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")); err == nil || !strings.Contains(err.Error(), "cluster.tls.ca_file") {
		t.Errorf("missing CA: %v", err)
	}
	if _, err := MeshTLS(filepath.Join(dir, "a.key"), filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a key as the CA: %v", err)
	}
	if _, err := MeshTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "a.pem"), filepath.Join(dir, "ca.pem")); err == nil || !strings.Contains(err.Error(), "cluster.tls: cert_file") {
		t.Errorf("a certificate as the key: %v", err)
	}
}
