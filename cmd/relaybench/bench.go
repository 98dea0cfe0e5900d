package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"
)

// config is the harness's configuration (see the flags in main.go).
type config struct {
	rounds      int
	requests    int
	conc        []int
	streams     int
	quick       bool
	out         string
	relayBin    string
	relayDebug  string
	relayEnv    envList // NAME=VALUE set for the relay alone (RELAY_* from the harness's own environment is not passed)
	mock        mockOptions
	slowDelay   time.Duration
	laneMax     time.Duration
	warmup      int
	rssWait     time.Duration
	settle      time.Duration
	keep        bool
	commandLine string
}

// cell is one measured configuration; every round measures each cell on each lane.
type cell struct {
	stream bool
	conc   int
}

func (c cell) String() string {
	if c.stream {
		return "stream c=" + strconv.Itoa(c.conc)
	}
	return "non-stream c=" + strconv.Itoa(c.conc)
}

// laneNames are measured in this order in every round, so slow drift of the machine hits all lanes alike.
// "relay" is the passthrough lane (OpenAI in, OpenAI out); "translate" sends the same OpenAI request
// through the relay to the Hunyuan-shaped mock, so the relay translates it both ways.
var laneNames = []string{"direct", "floor", "relay", "translate"}

// laneProc is the process role whose CPU a lane's proxy column shows ("" for direct: no proxy).
func laneProc(lane string) string {
	switch lane {
	case "direct":
		return ""
	case "translate":
		return "relay"
	}
	return lane
}

// laneMock is the mock role that answers a lane.
func laneMock(lane string) string {
	if lane == "translate" {
		return "mock-hunyuan"
	}
	return "mock"
}

// runStats is one lane's run of one cell in one round, reduced to the figures the report uses.
type runStats struct {
	ok, errs       int
	firstErr       string
	rps            float64
	p50, p99       float64            // µs, whole answer
	ttfb50, ttfb99 float64            // µs, streams
	gap50, gap99   float64            // µs, streams
	cpu            map[string]float64 // CPU seconds per process role during the run
	total          int
	foreign        float64 // share of the machine's CPU other processes used meanwhile
}

func reduce(r loadResult) runStats {
	s := runStats{ok: r.ok, errs: r.errs, firstErr: r.firstErr, total: r.ok + r.errs,
		p50: micros(percentile(r.lat, 50)), p99: micros(percentile(r.lat, 99)),
		ttfb50: micros(percentile(r.ttfb, 50)), ttfb99: micros(percentile(r.ttfb, 99)),
		gap50: micros(percentile(r.gaps, 50)), gap99: micros(percentile(r.gaps, 99))}
	if r.wall > 0 {
		s.rps = float64(r.ok) / r.wall.Seconds()
	}
	return s
}

// bench is one run of the harness: the processes, the lanes and what was measured.
type bench struct {
	cfg     config
	log     io.Writer
	dir     string
	relay   *proc
	floor   *proc
	mock    *proc
	slow    *proc
	slowFlr *proc
	hunyuan *proc
	key     string
	targets map[string]target
	pids    map[string]string // process role → /proc entry, for CPU accounting

	machine       machine
	relayStartRSS int64
	results       map[cell]map[string][]runStats
	cells         []cell
	mem           []memResult
	started       time.Time
	loadStart     string // 1-minute load average when the rounds began
	loadEnd       string
	elapsed       time.Duration
}

// setup builds the relay (unless given) and starts mock, slow mock, Hunyuan-shaped mock, floors and relay.
func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "relaybench-"); err != nil {
		return err
	}
	bin, err := relayBinary(ctx, b.cfg.relayBin, b.dir, b.logf)
	if err != nil {
		return err
	}
	b.machine = relayMachine(ctx, bin, b.cfg.relayBin == "")
	if b.mock, err = startHelper("mock", b.dir, "mock", b.cfg.mock.args()...); err != nil {
		return err
	}
	slowOpt := b.cfg.mock
	slowOpt.Delay, slowOpt.Fail = b.cfg.slowDelay, 0
	if b.slow, err = startHelper("mock-slow", b.dir, "mock", slowOpt.args()...); err != nil {
		return err
	}
	if b.floor, err = startHelper("floor", b.dir, "floor", "-upstream", b.mock.url); err != nil {
		return err
	}
	if b.slowFlr, err = startHelper("floor-slow", b.dir, "floor", "-upstream", b.slow.url); err != nil {
		return err
	}
	if b.hunyuan, err = startHelper("mock-hunyuan", b.dir, "mock-hunyuan", b.cfg.mock.args()...); err != nil {
		return err
	}
	if b.relay, b.key, err = startRelay(ctx, bin, b.dir, b.cfg.relayDebug, b.cfg.relayEnv, b.mock.url, b.slow.url, b.hunyuan.url); err != nil {
		return err
	}
	if m, err := readMem(b.relay.pid()); err == nil {
		b.relayStartRSS = m.RSS
	}
	const path = "/v1/chat/completions"
	b.targets = map[string]target{
		"direct":    {name: "direct", url: b.mock.url + path, key: "sk-mock", model: mockModel},
		"floor":     {name: "floor", url: b.floor.url + path, key: "sk-mock", model: mockModel},
		"relay":     {name: "relay", url: b.relay.url + path, key: b.key, model: mockModel},
		"translate": {name: "translate", url: b.relay.url + path, key: b.key, model: hunyuanModel},
	}
	b.pids = map[string]string{
		"relay": strconv.Itoa(b.relay.pid()), "floor": strconv.Itoa(b.floor.pid()),
		"mock": strconv.Itoa(b.mock.pid()), "loadgen": "self",
		"mock-slow": strconv.Itoa(b.slow.pid()), "floor-slow": strconv.Itoa(b.slowFlr.pid()),
		"mock-hunyuan": strconv.Itoa(b.hunyuan.pid()),
	}
	return nil
}

// relayBinary is the relay binary to measure: given, or built into dir from the checkout.
func relayBinary(ctx context.Context, given, dir string, logf func(string, ...any)) (string, error) {
	if given != "" {
		return given, nil
	}
	logf("building relay (go build ./cmd/relay)")
	return buildRelay(ctx, dir)
}

// relayMachine is machineInfo, with the checkout's revision when the harness built the relay itself
// and the binary does not carry it (GOFLAGS=-buildvcs=false leaves it out).
func relayMachine(ctx context.Context, bin string, built bool) machine {
	m := machineInfo(bin)
	if m.RelayRev == "" && built {
		m.RelayRev = gitRevision(ctx)
	}
	return m
}

// teardown stops the children (relay first, so it drains its log rows) and removes the temp dir.
func (b *bench) teardown() {
	for _, p := range []*proc{b.relay, b.floor, b.slowFlr, b.mock, b.slow, b.hunyuan} {
		p.stop()
	}
	removeTempDir(b.dir, b.cfg.keep, b.logf)
}

// removeTempDir removes a harness's temp dir ("" for none), or with -keep leaves it and says where.
func removeTempDir(dir string, keep bool, logf func(format string, args ...any)) {
	if dir == "" {
		return
	}
	if keep {
		logf("kept %s (relay configs, SQLite files, child logs)", dir)
		return
	}
	os.RemoveAll(dir)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "relaybench: "+format+"\n", args...)
}

// run measures every cell on every lane, round after round, then the memory test.
func (b *bench) run(ctx context.Context) error {
	b.started = time.Now()
	b.loadStart = loadAvg()
	defer func() { b.loadEnd = loadAvg() }()
	defer func() { b.elapsed = time.Since(b.started) }()
	maxConc := 1
	for _, c := range b.cfg.conc {
		maxConc = max(maxConc, c)
	}
	client := newClient(maxConc + 8)
	defer client.CloseIdleConnections()

	for _, stream := range []bool{false, true} {
		for _, c := range b.cfg.conc {
			b.cells = append(b.cells, cell{stream: stream, conc: c})
		}
	}
	b.results = map[cell]map[string][]runStats{}
	for _, c := range b.cells {
		b.results[c] = map[string][]runStats{}
	}

	// Warm-up: connection pools, the relay's key cache and prepared statements, page faults.
	for _, name := range laneNames {
		for _, stream := range []bool{false, true} {
			t := b.targets[name]
			spec := loadSpec{stream: stream, conc: maxConc, n: b.cfg.warmup, max: b.cfg.laneMax, body: chatBody(t.model, stream)}
			if r := runLoad(ctx, client, t, spec); r.ok == 0 && r.errs > 0 {
				return fmt.Errorf("warm-up on %s failed: %s", name, r.firstErr)
			}
		}
	}
	time.Sleep(b.cfg.settle)

	for round := 1; round <= b.cfg.rounds; round++ {
		for _, c := range b.cells {
			line := fmt.Sprintf("round %d/%d %-16s", round, b.cfg.rounds, c)
			for _, name := range laneNames {
				if err := ctx.Err(); err != nil {
					return err
				}
				s := b.measure(ctx, client, b.targets[name], c)
				b.results[c][name] = append(b.results[c][name], s)
				line += fmt.Sprintf("  %s %6.0f/s p50 %-7s other load %3.0f%%", name, s.rps, fmtMicros(s.p50), 100*s.foreign)
				if s.errs > 0 {
					line += fmt.Sprintf(" (%d errors: %s)", s.errs, s.firstErr)
				}
			}
			b.logf("%s", line)
		}
	}

	if b.cfg.streams > 0 {
		lanes := []struct {
			name string
			p    *proc
			key  string
		}{{"relay", b.relay, b.key}, {"floor", b.slowFlr, "sk-mock"}}
		for _, l := range lanes {
			m, err := b.memTest(ctx, l.name, l.p, l.key)
			if err != nil {
				return err
			}
			b.mem = append(b.mem, m)
		}
	}
	return nil
}

// measure runs one cell on one lane and charges each process the CPU it used meanwhile. The settle
// pause lets the relay's batched log writes land inside its own lane.
func (b *bench) measure(ctx context.Context, client *http.Client, t target, c cell) runStats {
	before, busy0 := b.cpuSnapshot(), machineBusySafe()
	start := time.Now()
	spec := loadSpec{stream: c.stream, conc: c.conc, n: b.cfg.requests, max: b.cfg.laneMax, body: chatBody(t.model, c.stream)}
	r := runLoad(ctx, client, t, spec)
	time.Sleep(b.cfg.settle)
	after, busy1 := b.cpuSnapshot(), machineBusySafe()
	wall := time.Since(start)
	s := reduce(r)
	s.cpu = map[string]float64{}
	ours := 0.0
	for role, v := range after {
		s.cpu[role] = v - before[role]
		ours += s.cpu[role]
	}
	if busy0 >= 0 && busy1 >= 0 {
		s.foreign = max(busy1-busy0-ours, 0) / (wall.Seconds() * float64(runtime.NumCPU()))
	}
	return s
}

// machineBusySafe is machineBusy, or -1 without /proc/stat.
func machineBusySafe() float64 {
	v, err := machineBusy()
	if err != nil {
		return -1
	}
	return v
}

func (b *bench) cpuSnapshot() map[string]float64 {
	out := make(map[string]float64, len(b.pids))
	for role, pid := range b.pids {
		if v, err := cpuSeconds(pid); err == nil {
			out[role] = v
		}
	}
	return out
}
