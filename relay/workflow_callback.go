package relay

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"relay/adaptor"
	"relay/store"
)

// Callback delivery: URL checks at submission, a dialer that refuses private destinations at connect
// time (the address actually dialled, so DNS rebinding does not get around the submission check), and
// the signed POST.

const maxCallbackURL = 2048

var errPrivateDestination = errors.New("callback destination is a private, loopback or link-local address")

// refusePrivate is the dialer's Control hook: it sees the resolved address about to be connected.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || adaptor.PrivateAddr(ap.Addr()) {
		return errPrivateDestination
	}
	return nil
}

func badCallback(msg string) *adaptor.Error {
	return &adaptor.Error{Status: 400, Type: adaptor.TypeInvalidRequest, Code: "invalid_callback", Param: "callback", Message: msg}
}

// checkCallbackURL validates a callback at submission: an absolute http(s) URL whose host, unless
// allowPrivate, is not and does not resolve to a private address. The dialer checks again at delivery.
func checkCallbackURL(ctx context.Context, raw string, allowPrivate bool) *adaptor.Error {
	if len(raw) > maxCallbackURL {
		return badCallback("callback must be at most " + strconv.Itoa(maxCallbackURL) + " characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return badCallback("callback is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return badCallback("callback must be an http or https URL")
	}
	host := u.Hostname()
	if host == "" {
		return badCallback("callback must name a host")
	}
	if allowPrivate {
		return nil
	}
	refused := badCallback("callback host " + strconv.Quote(host) + " is a private, loopback or link-local destination, which this relay does not call")
	if a, err := netip.ParseAddr(host); err == nil {
		if adaptor.PrivateAddr(a) {
			return refused
		}
		return nil
	}
	lh := strings.ToLower(strings.TrimSuffix(host, "."))
	if lh == "localhost" || strings.HasSuffix(lh, ".localhost") {
		return refused
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return badCallback("callback host " + strconv.Quote(host) + " cannot be resolved")
	}
	for _, a := range addrs {
		if adaptor.PrivateAddr(a) {
			return refused
		}
	}
	return nil
}

// newCallbackClient is the HTTP client of deliveries: no proxy (the dialled address is the receiver's),
// no redirects (a 3xx is a failed attempt), private destinations refused unless allowed.
func newCallbackClient(cb CallbacksConfig) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !cb.AllowPrivate {
		d.Control = refusePrivate
	}
	timeout := cb.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     60 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Sign is the callback signature of body: "sha256=" + hex HMAC-SHA256(secret, body).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// post makes one delivery attempt. status is the receiver's HTTP status (0 when there was none);
// errText describes a failure (never the secret or the URL's credentials).
func (r *jobRunner) post(ctx context.Context, j store.Job, attempt int) (status int, errText string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.Callback, bytes.NewReader(j.Result))
	if err != nil {
		return 0, "bad callback URL"
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "relay-callback/1")
	h.Set(HeaderTaskID, j.ID)
	h.Set(HeaderResultStatus, strconv.Itoa(j.ResultStatus))
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
	h.Set(HeaderSignature, Sign(r.secret, j.Result))
	resp, err := r.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		if errors.Is(err, errPrivateDestination) {
			return 0, errPrivateDestination.Error()
		}
		return 0, truncateText(err.Error(), 300)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp.StatusCode, ""
	}
	text := "HTTP " + strconv.Itoa(resp.StatusCode)
	if s := strings.TrimSpace(string(snippet)); s != "" {
		text += ": " + s
	}
	return resp.StatusCode, truncateText(text, 300)
}

// truncateText cuts s to at most n bytes on a rune boundary and drops invalid UTF-8.
func truncateText(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
