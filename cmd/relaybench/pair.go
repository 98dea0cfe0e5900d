package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// `relaybench pair` compares relay variants (environments) with each other and with the floor at the
// tail. The main harness alternates lanes in runs of thousands of requests, a minute or more per round;
// on a shared two-core box the machine's noise drifts on that scale by more than the tens of µs at p99
// that a setting changes. Here every lane gets many short blocks (500 requests by default), rotated so
// each lane follows each other lane equally often, so drift hits all lanes alike and the difference
// between two settings shows.

// variant is one relay process of a pair run: a label and what it adds to the relay's environment.
type variant struct {
	label string
	bin   string // the relay binary for this variant alone ("" for the run's)
	env   envList
}

// variantList is the repeatable -variant flag: "label[@binary][:NAME=VALUE,NAME=VALUE...]".
type variantList []variant

func (v *variantList) String() string {
	var parts []string
	for _, x := range *v {
		parts = append(parts, x.label)
	}
	return strings.Join(parts, ",")
}

func (v *variantList) Set(s string) error {
	head, envs, _ := strings.Cut(s, ":")
	label, bin, withBin := strings.Cut(head, "@")
	if withBin && bin == "" {
		return fmt.Errorf("variant %q: no binary after '@'", s)
	}
	if !validLabel(label) {
		return fmt.Errorf("variant %q: the label must be letters, digits, '.', '_' or '-'", s)
	}
	if label == "direct" || label == "floor" || label == "floor-bare" || label == "floor-bare-client" {
		return fmt.Errorf("variant %q: %q names a built-in lane", s, label)
	}
	for _, x := range *v {
		if x.label == label {
			return fmt.Errorf("variant %q: label %q given twice", s, label)
		}
	}
	nv := variant{label: label, bin: bin}
	if envs != "" {
		for _, kv := range strings.Split(envs, ",") {
			if err := nv.env.Set(kv); err != nil {
				return fmt.Errorf("variant %q: %w", s, err)
			}
		}
	}
	*v = append(*v, nv)
	return nil
}

func validLabel(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// pairConfig is `relaybench pair`'s configuration (see parsePairFlags).
type pairConfig struct {
	variants    variantList
	runs        int
	blocks      int
	block       int
	conc        int
	warmup      int
	gap         time.Duration
	stream      bool
	bare        bool
	out         string
	relayBin    string
	keep        bool
	mock        mockOptions
	commandLine string
}

func parsePairFlags(args []string, stderr io.Writer) (pairConfig, error) {
	var cfg pairConfig
	fs := flag.NewFlagSet("relaybench pair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&cfg.variants, "variant", `a relay to measure, "label[@binary][:NAME=VALUE,NAME=VALUE...]": its own binary if given `+
		`(to compare builds) and what it adds to its environment (to compare settings, e.g. nice0:RELAY_STORE_WRITER_NICE=0); `+
		`repeatable, one relay process each; default one relay as configured`)
	fs.IntVar(&cfg.runs, "runs", 4, "runs; the report gives each figure's median and range across runs")
	fs.IntVar(&cfg.blocks, "blocks", 10, "blocks per lane per run")
	fs.IntVar(&cfg.block, "block", 500, "requests per block")
	fs.IntVar(&cfg.conc, "concurrency", 1, "concurrent requests within a block")
	fs.IntVar(&cfg.warmup, "warmup", 300, "warm-up requests per lane")
	fs.DurationVar(&cfg.gap, "gap", 30*time.Millisecond, "pause after each block, so a relay's batched log writes land in its own block (10 ms flush)")
	fs.BoolVar(&cfg.stream, "stream", false, "stream requests (figures for the whole stream and for the first event)")
	fs.BoolVar(&cfg.bare, "bare", false, "also measure two bare floors (see barefloor.go): one without net/http, one with net/http's server "+
		"and the upstream exchange in the handler instead of http.Transport; non-stream only")
	fs.StringVar(&cfg.out, "out", "", `directory for <date>-pair.md or, with -stream, <date>-pair-stream.md ("" writes no file)`)
	fs.StringVar(&cfg.relayBin, "relay-bin", "", "relay binary (default: go build ./cmd/relay into a temp dir)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the temp dir (configs, SQLite files, child logs)")
	cfg.mock.register(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.runs < 1 || cfg.blocks < 1 || cfg.block < 1 || cfg.conc < 1 || cfg.warmup < 0:
		return cfg, errors.New("-runs, -blocks, -block and -concurrency must be at least 1, -warmup at least 0")
	case cfg.bare && cfg.stream:
		return cfg, errors.New("-bare floors read Content-Length answers only: not with -stream")
	case cfg.gap < 0:
		return cfg, errors.New("-gap must not be negative")
	case cfg.mock.Fail < 0 || cfg.mock.Fail > 1:
		return cfg, errors.New("-fail must be between 0 and 1")
	case cfg.mock.Chunks < 1:
		return cfg, errors.New("-chunks must be at least 1")
	}
	if len(cfg.variants) == 0 {
		cfg.variants = variantList{{label: "relay"}}
	}
	cfg.commandLine = strings.Join(append([]string{"relaybench", "pair"}, args...), " ")
	return cfg, nil
}

// pairLane is one lane of a pair run and its samples of the current run.
type pairLane struct {
	target
	relay bool   // one of the -variant relays (not direct or a floor)
	bin   string // the variant's own binary, as the report names it ("" for the run's)
	proc  *proc  // the process whose CPU is charged to the lane (nil for direct)
	env   envList
	res   loadResult
	cpu   float64 // CPU seconds of proc during the lane's blocks
	stats []pairStats
}

// pairStats is one lane's figures in one run.
type pairStats struct {
	n, errs             int
	firstErr            string
	p50, p90, p99, p999 float64 // µs, whole answer
	ttfb50, ttfb99      float64 // µs, streams
	cpuPer1k            float64 // CPU seconds per 1,000 requests (NaN for direct)
}

// pairBench is one `relaybench pair` run.
type pairBench struct {
	cfg     pairConfig
	log     io.Writer
	dir     string
	procs   []*proc
	lanes   []*pairLane // direct, floor, the bare floors (with -bare), then the variants
	direct  *pairLane
	floor   *pairLane
	first   *pairLane // the first variant: the others are compared with it
	machine machine
	started time.Time
	elapsed time.Duration
	loadAvg [2]string
}

func runPair(args []string, stdout, stderr io.Writer) error {
	cfg, err := parsePairFlags(args, stderr)
	if err != nil {
		return err
	}
	name := "%s-pair.md"
	if cfg.stream {
		name = "%s-pair-stream.md"
	}
	return measure(&pairBench{cfg: cfg, log: stderr}, cfg.out, name, stdout)
}

func (b *pairBench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "relaybench pair: "+format+"\n", args...)
}

// setup starts the mock, the floor and one relay per variant (each with its own config and SQLite file).
func (b *pairBench) setup(ctx context.Context) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "relaybench-pair-"); err != nil {
		return err
	}
	bin := ""
	for _, v := range b.cfg.variants {
		if v.bin == "" { // the run's binary is needed: given, or built here
			if bin, err = relayBinary(ctx, b.cfg.relayBin, b.dir, b.logf); err != nil {
				return err
			}
			b.machine = relayMachine(ctx, bin, b.cfg.relayBin == "")
			break
		}
	}
	if bin == "" {
		b.machine = machineInfo(b.cfg.variants[0].bin)
		b.machine.RelayRev = "per relay, see Relays"
	}
	mock, err := startHelper("mock", b.dir, "mock", b.cfg.mock.args()...)
	if err != nil {
		return err
	}
	b.procs = append(b.procs, mock)
	floor, err := startHelper("floor", b.dir, "floor", "-upstream", mock.url)
	if err != nil {
		return err
	}
	b.procs = append(b.procs, floor)
	const path = "/v1/chat/completions"
	b.direct = &pairLane{target: target{name: "direct", url: mock.url + path, key: "sk-mock", model: mockModel}}
	b.floor = &pairLane{target: target{name: "floor", url: floor.url + path, key: "sk-mock", model: mockModel}, proc: floor}
	b.lanes = []*pairLane{b.direct, b.floor}
	if b.cfg.bare {
		for _, role := range []string{"floor-bare", "floor-bare-client"} {
			p, err := startHelper(role, b.dir, role, "-upstream", mock.url)
			if err != nil {
				return err
			}
			b.procs = append(b.procs, p)
			b.lanes = append(b.lanes, &pairLane{target: target{name: role, url: p.url + path, key: "sk-mock", model: mockModel}, proc: p})
		}
	}
	for _, v := range b.cfg.variants {
		dir := filepath.Join(b.dir, "variant-"+v.label) // not dir/<label>: the built binary is dir/relay
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// Every channel of the relay's config points at the one mock; only the OpenAI one is used here.
		vbin, about := bin, ""
		if v.bin != "" {
			vbin, about = v.bin, "`"+v.bin+"`"
			if rev := machineInfo(v.bin).RelayRev; rev != "" {
				about += " (" + rev + ")"
			}
		}
		p, key, err := startRelay(ctx, vbin, dir, "", v.env, mock.url, mock.url, mock.url)
		if err != nil {
			return fmt.Errorf("variant %s: %w", v.label, err)
		}
		b.procs = append(b.procs, p)
		b.lanes = append(b.lanes, &pairLane{target: target{name: v.label, url: p.url + path, key: key, model: mockModel},
			relay: true, proc: p, env: v.env, bin: about})
	}
	for _, l := range b.lanes {
		if l.relay {
			b.first = l
			break
		}
	}
	return nil
}

// teardown stops the relays first (so they drain their log rows), then the floor and the mock.
func (b *pairBench) teardown() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	removeTempDir(b.dir, b.cfg.keep, b.logf)
}

// run warms every lane up, then measures the runs: in block k of a run the lanes go in the order
// rotated by k, so over the run each lane follows every other lane equally often.
func (b *pairBench) run(ctx context.Context) error {
	b.started = time.Now()
	b.loadAvg[0] = loadAvg()
	defer func() { b.elapsed, b.loadAvg[1] = time.Since(b.started), loadAvg() }()
	client := newClient(b.cfg.conc + 8)
	defer client.CloseIdleConnections()
	body := chatBody(mockModel, b.cfg.stream)
	spec := func(n int) loadSpec {
		return loadSpec{stream: b.cfg.stream, conc: b.cfg.conc, n: n, max: 10 * time.Minute, body: body}
	}
	for _, l := range b.lanes {
		if b.cfg.warmup == 0 {
			break
		}
		if r := runLoad(ctx, client, l.target, spec(b.cfg.warmup)); r.ok == 0 {
			return fmt.Errorf("warm-up on %s failed: %s", l.name, r.firstErr)
		}
	}
	time.Sleep(b.cfg.gap)
	for run := 1; run <= b.cfg.runs; run++ {
		for _, l := range b.lanes {
			l.res, l.cpu = loadResult{}, 0
		}
		for k := 0; k < b.cfg.blocks; k++ {
			for j := range b.lanes {
				if err := ctx.Err(); err != nil {
					return err
				}
				l := b.lanes[(k+j)%len(b.lanes)]
				cpu0 := procCPU(l.proc)
				r := runLoad(ctx, client, l.target, spec(b.cfg.block))
				time.Sleep(b.cfg.gap)
				l.cpu += procCPU(l.proc) - cpu0
				l.res.merge(&r)
			}
		}
		b.finishRun()
		line := fmt.Sprintf("run %d/%d", run, b.cfg.runs)
		for _, l := range b.lanes {
			s := l.stats[len(l.stats)-1]
			line += fmt.Sprintf("  %s p50 %s p99 %s", l.name, fmtMicros(s.p50), fmtMicros(s.p99))
			if s.errs > 0 {
				line += fmt.Sprintf(" (%d errors: %s)", s.errs, s.firstErr)
			}
		}
		b.logf("%s", line)
	}
	return nil
}

// procCPU is p's CPU seconds so far (0 for no process or when /proc cannot tell).
func procCPU(p *proc) float64 {
	if p == nil {
		return 0
	}
	v, err := cpuSeconds(strconv.Itoa(p.pid()))
	if err != nil {
		return 0
	}
	return v
}

// finishRun reduces the run's samples of every lane to its figures.
func (b *pairBench) finishRun() {
	for _, l := range b.lanes {
		slices.Sort(l.res.lat)
		slices.Sort(l.res.ttfb)
		q := func(xs []time.Duration, p float64) float64 {
			if len(xs) == 0 {
				return nan
			}
			return micros(percentile(xs, p))
		}
		s := pairStats{n: l.res.ok, errs: l.res.errs, firstErr: l.res.firstErr, cpuPer1k: nan,
			p50: q(l.res.lat, 50), p90: q(l.res.lat, 90), p99: q(l.res.lat, 99), p999: q(l.res.lat, 99.9),
			ttfb50: q(l.res.ttfb, 50), ttfb99: q(l.res.ttfb, 99)}
		if l.proc != nil && l.res.ok > 0 {
			s.cpuPer1k = l.cpu / float64(l.res.ok) * 1000
		}
		l.stats = append(l.stats, s)
	}
}

var nan = math.NaN()

// report renders the pair run as Markdown: setup, then every figure's median across runs with its range.
func (b *pairBench) report(date string) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	m, c, o := b.machine, b.cfg, b.cfg.mock
	mode := "non-stream"
	if c.stream {
		mode = fmt.Sprintf("stream (%d chunks, include_usage)", o.Chunks)
	}
	p("# relay paired comparison, %s", date)
	p("")
	machineRows(p, m, c.commandLine)
	p("| Requests | %s, concurrency %d; mock: %v between chunks, %d-byte answer, %.0f%% injected failures |",
		mode, c.conc, o.Delay, o.Size, o.Fail*100)
	var vs []string
	for _, l := range b.lanes {
		if !l.relay {
			continue
		}
		var about []string
		if l.bin != "" {
			about = append(about, "binary "+l.bin)
		}
		if len(l.env) > 0 {
			about = append(about, "environment `"+l.env.String()+"`")
		}
		if len(about) == 0 {
			about = append(about, "as configured")
		}
		vs = append(vs, fmt.Sprintf("**%s**: %s", l.name, strings.Join(about, ", ")))
	}
	p("| Relays | %s; each its own process and fresh SQLite request log (always on), one `openai` channel to the mock |", strings.Join(vs, "; "))
	if c.bare {
		p("| Bare floors | **floor-bare**: no net/http, one goroutine per connection; **floor-bare-client**: net/http server calling the upstream through `adaptor/h1` (the relay's transport) and nothing else |")
	}
	p("| Design | %d runs × %d blocks of %d requests per lane (warm-up %d); block k of a run takes the lanes in order rotated by k; %v pause after each block |",
		c.runs, c.blocks, c.block, c.warmup, c.gap)
	p("| Duration | %s; load average %s at start, %s at end |", b.elapsed.Round(time.Second), b.loadAvg[0], b.loadAvg[1])
	p("")
	p("Figures are medians across runs, `[min–max]` the range of single runs; each run's percentile is over all its blocks. " +
		"Differences (*− direct*, *− floor*, *− " + b.first.name + "*) are taken within each run, then summarised. " +
		"CPU is utime+stime from /proc/<pid>/stat over the lane's blocks and the pauses after them.")
	p("")

	// The columns against the first variant only when there is a second one.
	versus := len(vs) > 1
	type column struct {
		title string
		cell  func(l *pairLane) string
	}
	abs := func(title string, get func(pairStats) float64, format func(float64) string) column {
		return column{title, func(l *pairLane) string { return fmtSpreadWith(b.series(l, nil, get), format) }}
	}
	diff := func(title string, ref *pairLane, get func(pairStats) float64, show func(l *pairLane) bool) column {
		return column{title, func(l *pairLane) string {
			if !show(l) {
				return "—"
			}
			return fmtSpreadWith(b.series(l, ref, get), fmtSigned)
		}}
	}
	lower := func(title string, get func(pairStats) float64) column {
		return column{title, func(l *pairLane) string {
			if !l.relay || l == b.first {
				return "—"
			}
			d := b.series(l, b.first, get)
			n := 0
			for _, x := range d {
				if x < 0 {
					n++
				}
			}
			return fmt.Sprintf("%d of %d", n, len(d))
		}}
	}
	notDirect := func(l *pairLane) bool { return l != b.direct }
	notFloor := func(l *pairLane) bool { return l != b.direct && l != b.floor }
	otherVariant := func(l *pairLane) bool { return l.relay && l != b.first }
	table := func(cols []column) {
		var head, sep strings.Builder
		head.WriteString("| lane |")
		sep.WriteString("|---|")
		for _, col := range cols {
			head.WriteString(" " + col.title + " |")
			sep.WriteString("---:|")
		}
		p("%s", head.String())
		p("%s", sep.String())
		for _, l := range b.lanes {
			row := "| " + l.name + " |"
			for _, col := range cols {
				row += " " + col.cell(l) + " |"
			}
			p("%s", row)
		}
		p("")
	}
	p50 := func(s pairStats) float64 { return s.p50 }
	p99 := func(s pairStats) float64 { return s.p99 }
	cols := []column{abs("p50", p50, fmtMicros), abs("p90", func(s pairStats) float64 { return s.p90 }, fmtMicros),
		abs("p99", p99, fmtMicros), abs("p99.9", func(s pairStats) float64 { return s.p999 }, fmtMicros),
		diff("− direct p50", b.direct, p50, notDirect), diff("− direct p99", b.direct, p99, notDirect),
		diff("− floor p50", b.floor, p50, notFloor), diff("− floor p99", b.floor, p99, notFloor)}
	if versus {
		cols = append(cols, diff("p99 − "+b.first.name, b.first, p99, otherVariant), lower("runs with lower p99 than "+b.first.name, p99))
	}
	cols = append(cols, column{"proxy CPU s/1k req", func(l *pairLane) string {
		return fmtSpreadWith(b.series(l, nil, func(s pairStats) float64 { return s.cpuPer1k }), fmtCPU)
	}}, column{"errors", pairErrors})
	if c.stream {
		p("## Whole stream")
	} else {
		p("## Latency")
	}
	p("")
	table(cols)
	if c.stream {
		t50 := func(s pairStats) float64 { return s.ttfb50 }
		t99 := func(s pairStats) float64 { return s.ttfb99 }
		cols := []column{abs("TTFB p50", t50, fmtMicros), abs("TTFB p99", t99, fmtMicros),
			diff("− direct TTFB p50", b.direct, t50, notDirect), diff("− direct TTFB p99", b.direct, t99, notDirect),
			diff("− floor TTFB p50", b.floor, t50, notFloor), diff("− floor TTFB p99", b.floor, t99, notFloor)}
		if versus {
			cols = append(cols, diff("TTFB p99 − "+b.first.name, b.first, t99, otherVariant), lower("runs with lower TTFB p99 than "+b.first.name, t99))
		}
		p("## Time to the first event")
		p("")
		table(cols)
	}
	return w.String()
}

// series is get of every run of l, less get of the same run of ref when ref is not nil; runs where a
// figure is missing (no successful request) are left out.
func (b *pairBench) series(l, ref *pairLane, get func(pairStats) float64) []float64 {
	var out []float64
	for i, s := range l.stats {
		v := get(s)
		if ref != nil {
			v -= get(ref.stats[i])
		}
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

// pairErrors is the lane's failed requests over all runs, with the first error.
func pairErrors(l *pairLane) string {
	errs, total, first := 0, 0, ""
	for _, s := range l.stats {
		errs += s.errs
		total += s.n + s.errs
		if first == "" {
			first = s.firstErr
		}
	}
	return fmtErrorCount(errs, total, first)
}
