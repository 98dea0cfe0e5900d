// Command relaybench measures what the relay adds on top of its upstream: it starts a fast mock
// upstream (OpenAI-compatible, and a Hunyuan-shaped one for the translation lane), a bare reverse proxy
// (the floor) and the relay as separate processes, drives the same load through each in alternating
// rounds, and reports throughput, latency, CPU per request (from /proc) and memory under many slow
// streams as a Markdown table (stdout and bench/results/<date>.md).
//
//	go run ./cmd/relaybench            # full run
//	go run ./cmd/relaybench -quick     # CI smoke test, well under a minute once the relay is built
//
//	go run ./cmd/relaybench pair -variant nice0:RELAY_STORE_WRITER_NICE=0 -variant nice19:RELAY_STORE_WRITER_NICE=19
//	                                    # paired comparison of relay settings at the tail (see pair.go)
//
// `relaybench mock`, `relaybench mock-hunyuan` and `relaybench floor` are the child processes it starts;
// they are not meant to be run by hand, but may be (for pprof or curl experiments).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fatal(err)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "mock":
			return runMock(args[1:], stdout)
		case "mock-hunyuan":
			return runHunyuanMock(args[1:], stdout)
		case "floor":
			return runFloor(args[1:], stdout)
		case "floor-bare":
			return runBareFloor(args[1:], stdout)
		case "floor-bare-client":
			return runBareClientFloor(args[1:], stdout)
		case "pair":
			return runPair(args[1:], stdout, stderr)
		}
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	name := "%s.md"
	if cfg.quick {
		name = "%s-quick.md" // a smoke run must not overwrite the day's real numbers
	}
	return measure(&bench{cfg: cfg, log: stderr}, cfg.out, name, stdout)
}

// harness is one kind of measurement: the main benchmark or a pair run.
type harness interface {
	setup(ctx context.Context) error
	run(ctx context.Context) error
	report(date string) string
	teardown()
	logf(format string, args ...any)
}

// measure sets h up, runs it until done or interrupted, tears it down, prints its report and, unless
// out is "", writes it to out/name (name has a %s for the date).
func measure(h harness, out, name string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	defer h.teardown()
	if err := h.setup(ctx); err != nil {
		return err
	}
	if err := h.run(ctx); err != nil {
		return err
	}
	date := time.Now().Format("2006-01-02")
	md := h.report(date)
	fmt.Fprint(stdout, md)
	if out == "" {
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(out, fmt.Sprintf(name, date))
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return err
	}
	h.logf("wrote %s", path)
	return nil
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.rounds, "rounds", 5, "rounds; each measures every cell on direct, floor and relay in turn")
	fs.IntVar(&cfg.requests, "requests", 2000, "requests per lane per cell per round")
	concList := fs.String("concurrency", "1,32", "comma-separated concurrency levels")
	fs.IntVar(&cfg.streams, "streams", 1000, "concurrent slow streams for the memory test (0 skips it)")
	fs.BoolVar(&cfg.quick, "quick", false, "small, fast configuration (CI smoke test); explicit flags still win")
	fs.StringVar(&cfg.out, "out", "bench/results", `directory for <date>.md ("" writes no file)`)
	fs.StringVar(&cfg.relayBin, "relay-bin", "", "relay binary to measure (default: go build ./cmd/relay into a temp dir)")
	fs.StringVar(&cfg.relayDebug, "relay-debug", "", "serve the relay's pprof on this loopback address (server.debug_listen), to profile it under load")
	fs.Var(&cfg.relayEnv, "relay-env", "NAME=VALUE in the relay's environment, e.g. RELAY_STORE_FLUSH_INTERVAL=10ms or GOGC=off (repeatable); "+
		"the harness does not pass its own RELAY_* variables on")
	cfg.mock.register(fs)
	fs.DurationVar(&cfg.slowDelay, "slow-delay", 50*time.Millisecond, "delay between chunks in the memory test")
	fs.DurationVar(&cfg.laneMax, "lane-timeout", 60*time.Second, "time bound of one lane's run (requests stop being issued)")
	fs.IntVar(&cfg.warmup, "warmup", 300, "warm-up requests per lane and mode")
	fs.DurationVar(&cfg.rssWait, "rss-wait", 30*time.Second, "how long to follow RSS after the memory test")
	fs.DurationVar(&cfg.settle, "settle", 200*time.Millisecond, "pause after each lane's run before reading CPU (relay log flush)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the temp dir (config, SQLite file, child logs)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]string{"rounds": "2", "requests": "200", "streams": "200", "warmup": "50",
			"rss-wait": "2s", "lane-timeout": "10s", "settle": "100ms"}
		for name, v := range quick {
			if !set[name] {
				fs.Set(name, v)
			}
		}
	}
	var err error
	if cfg.conc, err = parseConc(*concList); err != nil {
		return cfg, err
	}
	switch {
	case cfg.rounds < 1 || cfg.requests < 1:
		return cfg, errors.New("-rounds and -requests must be at least 1")
	case cfg.mock.Fail < 0 || cfg.mock.Fail > 1:
		return cfg, errors.New("-fail must be between 0 and 1")
	case cfg.mock.Chunks < 1:
		return cfg, errors.New("-chunks must be at least 1")
	}
	cfg.commandLine = strings.Join(append([]string{"relaybench"}, args...), " ")
	return cfg, nil
}

func parseConc(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-concurrency: bad level %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}
