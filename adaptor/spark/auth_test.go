package spark

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// Wire document §2.1: S1 is iFlytek's own example, S2-S4 are derived from it.
const (
	vecKey    = "addd2272b6d8b7c8abdd79531420ca3b"
	vecSecret = "MjlmNzkzNmZkMDQ2OTc0ZDdmNGE2ZTZi"
	vecHost   = "spark-api.xf-yun.com"
	vecDate   = "Fri, 05 May 2023 10:43:39 GMT"
)

func vecTime(t *testing.T) time.Time {
	t.Helper()
	tm, err := time.Parse(http.TimeFormat, vecDate)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestSignatureVectors(t *testing.T) {
	for _, tc := range []struct{ name, path, want string }{
		{"S1", "/v1.1/chat", "z5gHdu3pxVV4ADMyk467wOWDQ9q6BQzR3nfMTjc/DaQ="},
		{"S2", "/v3.5/chat", "9s5gABpQIH+9wiR0dmxhlVY3Cqw34SFim12TmXSwVKc="},
		{"S3", "/chat/max-32k", "sq19AjYt+EC5SQWDhkY6/YXpGBPaMo7NWibDHMGfLFY="},
	} {
		if got := Signature(vecSecret, vecHost, vecDate, tc.path); got != tc.want {
			t.Errorf("%s: signature %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestAuthorizationS1(t *testing.T) {
	const want = "YXBpX2tleT0iYWRkZDIyNzJiNmQ4YjdjOGFiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0iaG9zdCBkYXRlIHJlcXVlc3QtbGluZSIsIHNpZ25hdHVyZT0iejVnSGR1M3B4VlY0QURNeWs0Njd3T1dEUTlxNkJRelIzbmZNVGpjL0RhUT0i"
	if got := Authorization(vecKey, Signature(vecSecret, vecHost, vecDate, "/v1.1/chat")); got != want {
		t.Errorf("authorization\n got %s\nwant %s", got, want)
	}
}

// S4 is one-api's "hmac username=" wording over S1's signature: the signature part is shared, only the
// wording of the origin differs (the relay sends the official api_key= wording).
func TestAuthorizationS4Wording(t *testing.T) {
	const want = "aG1hYyB1c2VybmFtZT0iYWRkZDIyNzJiNmQ4YjdjOGFiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0iaG9zdCBkYXRlIHJlcXVlc3QtbGluZSIsIHNpZ25hdHVyZT0iejVnSGR1M3B4VlY0QURNeWs0Njd3T1dEUTlxNkJRelIzbmZNVGpjL0RhUT0i"
	sig := Signature(vecSecret, vecHost, vecDate, "/v1.1/chat")
	origin := `hmac username="` + vecKey + `", algorithm="hmac-sha256", headers="host date request-line", signature="` + sig + `"`
	if got := base64.StdEncoding.EncodeToString([]byte(origin)); got != want {
		t.Errorf("S4 authorization\n got %s\nwant %s", got, want)
	}
}

func TestAuthURLVectors(t *testing.T) {
	for _, tc := range []struct{ name, url, want string }{
		{"S1", "wss://spark-api.xf-yun.com/v1.1/chat",
			"wss://spark-api.xf-yun.com/v1.1/chat?authorization=YXBpX2tleT0iYWRkZDIyNzJiNmQ4YjdjOGFiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0iaG9zdCBkYXRlIHJlcXVlc3QtbGluZSIsIHNpZ25hdHVyZT0iejVnSGR1M3B4VlY0QURNeWs0Njd3T1dEUTlxNkJRelIzbmZNVGpjL0RhUT0i&date=Fri%2C+05+May+2023+10%3A43%3A39+GMT&host=spark-api.xf-yun.com"},
		{"S2", "wss://spark-api.xf-yun.com/v3.5/chat",
			"wss://spark-api.xf-yun.com/v3.5/chat?authorization=YXBpX2tleT0iYWRkZDIyNzJiNmQ4YjdjOGFiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0iaG9zdCBkYXRlIHJlcXVlc3QtbGluZSIsIHNpZ25hdHVyZT0iOXM1Z0FCcFFJSCs5d2lSMGRteGhsVlkzQ3F3MzRTRmltMTJUbVhTd1ZLYz0i&date=Fri%2C+05+May+2023+10%3A43%3A39+GMT&host=spark-api.xf-yun.com"},
	} {
		got, err := AuthURL(tc.url, vecKey, vecSecret, vecTime(t))
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// The date is always rendered in GMT, whatever zone the clock is in.
func TestAuthURLDateInGMT(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	got, err := AuthURL("wss://spark-api.xf-yun.com/v1.1/chat", vecKey, vecSecret, vecTime(t).In(cst))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := AuthURL("wss://spark-api.xf-yun.com/v1.1/chat", vecKey, vecSecret, vecTime(t))
	if got != want {
		t.Errorf("zone changed the URL:\n got %s\nwant %s", got, want)
	}
}

// A local mock URL signs its host with the port, as the request's Host header carries it.
func TestAuthURLHostWithPort(t *testing.T) {
	got, err := AuthURL("ws://127.0.0.1:8080/v3.5/chat", vecKey, vecSecret, vecTime(t))
	if err != nil {
		t.Fatal(err)
	}
	// Authorization is base64 and may hold + and /, which the query encodes.
	want := "ws://127.0.0.1:8080/v3.5/chat?authorization=" + url.QueryEscape(Authorization(vecKey, Signature(vecSecret, "127.0.0.1:8080", vecDate, "/v3.5/chat"))) +
		"&date=Fri%2C+05+May+2023+10%3A43%3A39+GMT&host=127.0.0.1%3A8080"
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	if _, err := AuthURL("/no/host", vecKey, vecSecret, vecTime(t)); err == nil {
		t.Error("a URL without host was signed")
	}
}
