package hunyuan

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// SignInput is everything TC3-HMAC-SHA256 covers for a POST to CanonicalURI "/".
type SignInput struct {
	SecretID, SecretKey string
	// Service is the signing service name ("hunyuan").
	Service string
	// Host is the Host header as sent (host[:port]).
	Host string
	// ContentType must be byte-identical to the Content-Type header sent.
	ContentType string
	// Action, when set, is signed too as x-tc-action (one-api style). The relay leaves it empty and
	// signs content-type;host only, like Tencent's Go SDK.
	Action    string
	Timestamp int64
	// Payload is the exact body sent.
	Payload []byte
}

const algorithm = "TC3-HMAC-SHA256"

// Authorization returns the Authorization header value for in.
func Authorization(in SignInput) string {
	date := time.Unix(in.Timestamp, 0).UTC().Format("2006-01-02") // UTC, never local time
	signed := "content-type;host"
	if in.Action != "" {
		signed = "content-type;host;x-tc-action"
	}
	sum := sha256.Sum256(in.Payload)

	cr := make([]byte, 0, 256)
	cr = append(cr, "POST\n/\n\ncontent-type:"...)
	cr = append(cr, strings.ToLower(strings.TrimSpace(in.ContentType))...)
	cr = append(cr, "\nhost:"...)
	cr = append(cr, strings.ToLower(strings.TrimSpace(in.Host))...)
	cr = append(cr, '\n')
	if in.Action != "" {
		cr = append(cr, "x-tc-action:"...)
		cr = append(cr, strings.ToLower(strings.TrimSpace(in.Action))...)
		cr = append(cr, '\n')
	}
	cr = append(cr, '\n')
	cr = append(cr, signed...)
	cr = append(cr, '\n')
	cr = hex.AppendEncode(cr, sum[:])
	crSum := sha256.Sum256(cr)

	scope := date + "/" + in.Service + "/tc3_request"
	sts := make([]byte, 0, 128)
	sts = append(sts, algorithm+"\n"...)
	sts = strconv.AppendInt(sts, in.Timestamp, 10)
	sts = append(sts, '\n')
	sts = append(sts, scope...)
	sts = append(sts, '\n')
	sts = hex.AppendEncode(sts, crSum[:])

	k := mac([]byte("TC3"+in.SecretKey), []byte(date))
	k = mac(k, []byte(in.Service))
	k = mac(k, []byte("tc3_request"))
	sig := hex.EncodeToString(mac(k, sts))

	return algorithm + " Credential=" + in.SecretID + "/" + scope + ", SignedHeaders=" + signed + ", Signature=" + sig
}

func mac(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}
