package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"testing"
)

func signDemo(header, payload string) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(header))
	p := base64.RawURLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(DemoJWTKey))
	mac.Write([]byte(h + "." + p))
	return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestVerifyTokens(t *testing.T) {
	tok := signDemo(`{"alg":"HS256"}`, `{"sub":"x"}`)
	if err := verifyTokens([]byte(`{"auth":"` + tok + `"}`)); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	bad := tok[:len(tok)-2] + "AA"
	if bad == tok {
		bad = tok[:len(tok)-2] + "BB"
	}
	if err := verifyTokens([]byte(`{"auth":"` + bad + `"}`)); err == nil {
		t.Fatal("corrupted token accepted")
	}
	if err := verifyTokens([]byte(`{"text":"no tokens here"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b := make([]byte, 1)
			c.Read(b)
			c.Write(b)
			c.Close()
		}
	}()
	if err := roundTrip(l.Addr().String()); err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if err := roundTrip(addr); err == nil {
		t.Fatal("round trip to a closed port succeeded")
	}
}
