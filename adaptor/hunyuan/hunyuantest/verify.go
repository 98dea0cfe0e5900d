package hunyuantest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// verify checks a TC3-HMAC-SHA256 request the way the server side must: from what arrived (the
// signed-header list in Authorization, the header values and body received), not from what a client
// meant to send. It returns a Tencent error code and message, or "" when the request is good.
func (s *Server) verify(r *http.Request, body []byte) (code, msg string) {
	const fail = "AuthFailure.SignatureFailure"
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "TC3-HMAC-SHA256 ")
	if !ok {
		return fail, "Authorization is not TC3-HMAC-SHA256"
	}
	fields := map[string]string{}
	for _, kv := range strings.Split(rest, ", ") {
		k, v, _ := strings.Cut(kv, "=")
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 4 || cred[2] != "hunyuan" || cred[3] != "tc3_request" {
		return fail, "bad Credential scope"
	}
	if cred[0] != s.opts.SecretID {
		return "AuthFailure.SecretIdNotFound", "The SecretId is not found"
	}
	ts, err := strconv.ParseInt(r.Header.Get("X-TC-Timestamp"), 10, 64)
	if err != nil {
		return fail, "bad X-TC-Timestamp"
	}
	if d := s.opts.Now().Unix() - ts; d > 300 || d < -300 {
		return "AuthFailure.SignatureExpire", "The signature expired: X-TC-Timestamp is more than 5 minutes off"
	}
	date := time.Unix(ts, 0).UTC().Format(time.DateOnly)
	if cred[1] != date {
		return fail, "Credential date does not match X-TC-Timestamp"
	}

	names := strings.Split(fields["SignedHeaders"], ";")
	if !sort.StringsAreSorted(names) || !slices.Contains(names, "content-type") || !slices.Contains(names, "host") {
		return fail, "SignedHeaders must be sorted and include content-type and host"
	}
	var canon strings.Builder
	for _, n := range names {
		v := r.Header.Get(n)
		if n == "host" {
			v = r.Host
		}
		canon.WriteString(n + ":" + strings.ToLower(strings.TrimSpace(v)) + "\n")
	}
	payload := hexSum(body)
	if r.Header.Get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD" {
		payload = hexSum([]byte("UNSIGNED-PAYLOAD"))
	}
	canonical := strings.Join([]string{"POST", "/", "", canon.String(), fields["SignedHeaders"], payload}, "\n")
	scope := date + "/hunyuan/tc3_request"
	toSign := "TC3-HMAC-SHA256\n" + strconv.FormatInt(ts, 10) + "\n" + scope + "\n" + hexSum([]byte(canonical))

	key := []byte("TC3" + s.opts.SecretKey)
	for _, part := range []string{date, "hunyuan", "tc3_request"} {
		key = hmacSum(key, part)
	}
	want := hex.EncodeToString(hmacSum(key, toSign))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return fail, "The provided credentials could not be validated. Please ensure your signature is correct."
	}
	return "", ""
}

func hexSum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSum(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
