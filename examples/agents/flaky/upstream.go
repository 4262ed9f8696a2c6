package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"time"
)

// DemoJWTKey signs the tokens of the demo's inputs; -verify-jwt checks
// them, so a token corrupted on its way in is noticed.
const DemoJWTKey = "resilienced-demo-key"

// roundTrip dials the upstream, writes a byte and reads it back: the
// cheapest honest stand-in for a call to a vector database. A new
// connection each time, so a network cut is seen on the next call.
func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte{'?'}); err != nil {
		return err
	}
	var b [1]byte
	_, err = c.Read(b[:])
	return err
}

// verifyTokens checks every JWT-shaped string ("eyJ….….…") in the raw JSON
// input against DemoJWTKey with HS256.
func verifyTokens(input []byte) error {
	for i := 0; i+3 < len(input); i++ {
		if !bytes.HasPrefix(input[i:], []byte("eyJ")) {
			continue
		}
		j := i
		for j < len(input) && (isB64URL(input[j]) || input[j] == '.') {
			j++
		}
		tok := input[i:j]
		i = j
		parts := bytes.Split(tok, []byte("."))
		if len(parts) != 3 {
			continue
		}
		mac := hmac.New(sha256.New, []byte(DemoJWTKey))
		mac.Write(tok[:len(parts[0])+1+len(parts[1])])
		want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(want), parts[2]) {
			return fmt.Errorf("invalid token: bad signature on %.24s…", tok)
		}
	}
	return nil
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
