package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// childEnv marks a re-executed harness binary as a child, so a test binary (whose os.Executable is the
// test) runs the mock or floor instead of the tests.
const childEnv = "RELAYBENCH_CHILD"

// proc is a child process the harness started and must stop.
type proc struct {
	name string
	cmd  *exec.Cmd
	url  string // base URL it serves on
	log  string // its stderr
	done chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// envList is a repeatable NAME=VALUE flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
		return fmt.Errorf("%q is not NAME=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

// childEnviron is the environment for children: no proxies (all traffic is loopback) and no RELAY_*
// overrides from the caller's shell, so the generated config file is what the relay runs with
// (plus what -relay-env names, passed as extra).
func childEnviron(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RELAY_") || strings.HasSuffix(strings.ToLower(name), "_proxy") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func startProc(name, dir string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{name: name, cmd: cmd, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = f
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// startHelper re-executes this binary as `relaybench <role> args...` and waits for the URL it prints.
func startHelper(name, dir, role string, args ...string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{role}, args...)...)
	cmd.Env = childEnviron(childEnv + "=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := startProc(name, dir, cmd)
	if err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if u, ok := strings.CutPrefix(strings.TrimSpace(s), "listening "); ok {
			p.url = u
			return p, nil
		}
	case <-time.After(10 * time.Second):
	}
	p.stop()
	return nil, fmt.Errorf("%s did not start: %s", name, p.tail())
}

// stop sends SIGTERM and waits; a child that does not end in time is killed.
func (p *proc) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of the child's stderr, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if len(b) == 0 {
		return "(no output)"
	}
	return string(b)
}

// moduleRoot finds the relay module above the working directory, to build ./cmd/relay from it.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module relay\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the relay module: run from the repo or pass -relay-bin")
		}
		dir = parent
	}
}

// buildRelay compiles the relay into dir, the way `make build` would, and returns the binary's path.
func buildRelay(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "relay")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/relay")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/relay: %w\n%s", err, out)
	}
	return bin, nil
}

// gitRevision describes the checkout the relay was built from ("" outside git).
func gitRevision(ctx context.Context) string {
	root, err := moduleRoot()
	if err != nil {
		return ""
	}
	rev, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(rev))
	// Neither untracked files nor results count: a results file the harness wrote is not a change to the
	// relay.
	status := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
	if st, err := status.Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		s += " (with uncommitted changes)"
	}
	return s
}

// relayConfig is the relay's config for the run: one openai channel per OpenAI mock and one hunyuan
// channel (native API, signed with a made-up key pair the mock does not check) to the Hunyuan-shaped
// mock, and a fresh SQLite file. The request log to SQLite is always on in the relay, so it is part of
// what is measured.
const relayConfig = `listen: %s
log:
  format: text
  level: warn
  access_log: false
server:
  shutdown_grace: 5s
  debug_listen: "%s"
store:
  path: %s
channels:
  - name: mock
    kind: openai
    enabled: true
    base_url: %s/v1
    keys: ["sk-mock"]
    models: [bench]
  - name: mock-slow
    kind: openai
    enabled: true
    base_url: %s/v1
    keys: ["sk-mock"]
    models: [bench-slow]
  - name: mock-hunyuan
    kind: hunyuan
    enabled: true
    base_url: %s/
    credentials:
      secret_id: AKIDbenchEXAMPLE
      secret_key: bench-secret-key
    models: [bench-hunyuan]
`

// startRelay writes the config, creates a key with the relay's own CLI and starts `relay serve`.
// debug is the relay's pprof address ("" for none); env is added to its environment.
func startRelay(ctx context.Context, bin, dir, debug string, env []string, fastURL, slowURL, hunyuanURL string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, "relay.yaml")
	// The database goes in a folder of its own, as in the default layout (./data/relay.db): the relay
	// watches its config file's folder, and every WAL write there would wake the watcher.
	db := filepath.Join(dir, "data", "relay.db")
	body := fmt.Sprintf(relayConfig, addr, debug, db, fastURL, slowURL, hunyuanURL)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return nil, "", err
	}
	keyCmd := exec.CommandContext(ctx, bin, "-config", cfg, "keys", "create", "--name", "bench")
	keyCmd.Env = childEnviron(env...)
	var stderr bytes.Buffer
	keyCmd.Stderr = &stderr
	out, err := keyCmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("relay keys create: %w: %s", err, stderr.Bytes())
	}
	key := strings.TrimSpace(string(out))
	if key == "" || strings.ContainsAny(key, " \n") {
		return nil, "", fmt.Errorf("relay keys create printed %q, want one key", out)
	}
	cmd := exec.Command(bin, "-config", cfg, "serve")
	cmd.Env = childEnviron(env...)
	p, err := startProc("relay", dir, cmd)
	if err != nil {
		return nil, "", err
	}
	p.url = "http://" + addr
	if err := waitHealthy(p); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, key, nil
}

func waitHealthy(p *proc) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: loopbackDialer(time.Second)}}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("relay exited at start: %s", p.tail())
		}
		if resp, err := c.Get(p.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("relay not healthy after 20s: %s", p.tail())
}

// freeAddr picks a free loopback port for the relay, which takes its listen address from config.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
