package spark

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// Signature is the base64 HMAC-SHA256 (keyed with the API secret) of Spark's signed string: the host,
// the date and the GET request line, joined by newlines.
func Signature(apiSecret, host, date, path string) string {
	m := hmac.New(sha256.New, []byte(apiSecret))
	m.Write([]byte("host: " + host + "\ndate: " + date + "\nGET " + path + " HTTP/1.1"))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Authorization is the base64 authorization query value for a signature (the api_key= wording of the
// official auth document).
func Authorization(apiKey, signature string) string {
	origin := `api_key="` + apiKey + `", algorithm="hmac-sha256", headers="host date request-line", signature="` + signature + `"`
	return base64.StdEncoding.EncodeToString([]byte(origin))
}

// AuthURL signs a Spark WebSocket URL: it adds the authorization, date and host query parameters for
// the URL's host and path at time t. The date is RFC 1123 in GMT, as the gateway requires.
func AuthURL(rawURL, apiKey, apiSecret string, t time.Time) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", errors.New("spark: URL has no host")
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	date := t.UTC().Format(http.TimeFormat)
	q := u.Query()
	q.Set("authorization", Authorization(apiKey, Signature(apiSecret, u.Host, date, path)))
	q.Set("date", date)
	q.Set("host", u.Host)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
