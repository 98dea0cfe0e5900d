package adaptor

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Images: upstreams that cannot take an image URL get the bytes inline. data: URLs are decoded here;
// http(s) URLs are fetched by the relay with a size limit, a timeout, a content-type check and no
// private, loopback or link-local destinations (checked on the dialled address, so DNS cannot dodge it).

// ImageFetcher fetches remote images for adaptors. Tests that serve images on loopback set AllowPrivate.
type ImageFetcher struct {
	MaxBytes     int64
	Timeout      time.Duration
	AllowPrivate bool
	once         sync.Once
	client       *http.Client
}

// Images is the shared fetcher (20 MiB, 15 s).
var Images = &ImageFetcher{MaxBytes: 20 << 20, Timeout: 15 * time.Second}

// Image is an image ready to inline.
type Image struct {
	MediaType string // image/png, ...
	Base64    string // standard encoding, no data: prefix
}

// ParseDataURL decodes data:<type>;base64,<data>.
func ParseDataURL(u string) (Image, bool) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return Image{}, false
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok || !strings.HasSuffix(meta, ";base64") {
		return Image{}, false
	}
	mt := strings.TrimSuffix(meta, ";base64")
	if mt == "" {
		mt = "application/octet-stream"
	}
	return Image{MediaType: mt, Base64: data}, true
}

// Resolve returns the image behind an OpenAI image_url: a data: URL as it is, an http(s) URL fetched.
func (f *ImageFetcher) Resolve(ctx context.Context, url string) (Image, error) {
	if img, ok := ParseDataURL(url); ok {
		if !strings.HasPrefix(img.MediaType, "image/") {
			return Image{}, BadRequest("messages", "image data URL has media type "+img.MediaType+", want image/*")
		}
		return img, nil
	}
	if strings.HasPrefix(url, "data:") {
		return Image{}, BadRequest("messages", "image data URL must be base64 (data:image/...;base64,...)")
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return Image{}, BadRequest("messages", "image_url must be an http(s) or data: URL")
	}
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Image{}, BadRequest("messages", "bad image_url: "+err.Error())
	}
	resp, err := f.httpClient().Do(req)
	if err != nil {
		var pe *privateAddrError
		if errors.As(err, &pe) {
			return Image{}, BadRequest("messages", "image_url points to a private address")
		}
		return Image{}, BadRequest("messages", "cannot fetch image_url: "+TransportError(ctx, err).Message)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Image{}, BadRequest("messages", "fetching image_url answered HTTP "+resp.Status)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "image/") {
		return Image{}, BadRequest("messages", "image_url content type is "+mt+", want image/*")
	}
	if resp.ContentLength > f.MaxBytes {
		return Image{}, BadRequest("messages", "image_url is larger than the image size limit")
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, f.MaxBytes+1))
	if err != nil {
		return Image{}, BadRequest("messages", "cannot read image_url: "+err.Error())
	}
	if int64(len(b)) > f.MaxBytes {
		return Image{}, BadRequest("messages", "image_url is larger than the image size limit")
	}
	return Image{MediaType: mt, Base64: base64.StdEncoding.EncodeToString(b)}, nil
}

type privateAddrError struct{ addr string }

func (e *privateAddrError) Error() string { return "refusing private address " + e.addr }

func (f *ImageFetcher) httpClient() *http.Client {
	f.once.Do(f.init)
	return f.client
}

func (f *ImageFetcher) init() {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		if f.AllowPrivate {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &privateAddrError{address}
		}
		if PrivateAddr(ap.Addr()) {
			return &privateAddrError{address}
		}
		return nil
	}}
	f.client = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConnsPerHost: 4},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return nil
		}}
}
