package chaos

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// DemoJWTKey is the HMAC-SHA256 key of the demo's tokens. An agent that
// verifies the JWTs in its input with it (flaky -verify-jwt) rejects the
// ones a corrupt-token fault damaged.
const DemoJWTKey = "resilienced-demo-key"

// SignJWT returns an HS256 JWT of the JSON claims, signed with key.
func SignJWT(key []byte, claims string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body := enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(head + "." + body))
	return head + "." + body + "." + enc.EncodeToString(mac.Sum(nil))
}

// VerifyJWT reports whether token is an HS256 JWT whose signature matches
// key.
func VerifyJWT(key []byte, token string) bool {
	head, rest, ok := strings.Cut(token, ".")
	if !ok {
		return false
	}
	body, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(head + "." + body))
	return hmac.Equal(got, mac.Sum(nil))
}

// DemoToken is a token signed with DemoJWTKey, for call inputs.
var DemoToken = SignJWT([]byte(DemoJWTKey), `{"sub":"resilienced-chaos","scope":"demo"}`)

// CallInput returns the input of the n-th call the engine or the demo's
// load generator makes: a small JSON object that carries DemoToken, so
// that a corrupt-token fault has something to corrupt.
func CallInput(n uint64) []byte {
	b := make([]byte, 0, 64+len(DemoToken))
	b = append(b, `{"n":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"task":"summarize","token":"`...)
	b = append(b, DemoToken...)
	return append(b, `"}`...)
}

var callInput = CallInput
