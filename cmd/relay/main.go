// Command relay is the single-binary LLM API relay: `relay serve` runs it, `relay keys` manages relay
// keys, `relay migrate` applies the store's migrations, `relay version` prints the version.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fsnotify/fsnotify"

	"relay/adaptor/kinds"
	"relay/relay"
	"relay/store"
	"relay/store/sqlite"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

const usage = `usage: relay [-config FILE] <command> [args]

commands:
  serve                          start the relay (the default)
  keys create --name NAME [--models a,b] [--admin] [--rpm N] [--tpm N] [--max-streams N] [--quota TOKENS] [--user NAME|ID]
                                 create a relay key and print it once
  keys list                      list keys (never their secrets)
  keys revoke NAME|ID            revoke a key
  users create --name NAME [--admin]
                                 create a user (session surface; --admin: data management)
  users list                     list users
  token issue --user NAME|ID [--ttl 24h]
                                 print a JWT for the user (needs auth.jwt_secret / RELAY_JWT_SECRET)
  migrate                        apply database migrations
  version                        print the version
`

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "config.yaml", "config file (YAML); RELAY_* environment variables override it")
	logFormat := fs.String("log-format", "", "log format: text or json (overrides log.format)")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	cmd := "serve"
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	if cmd == "version" {
		fmt.Fprintln(stdout, "relay", version)
		return nil
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	log := relay.NewLogger(cfg.Log, stderr)
	switch cmd {
	case "serve":
		return serve(cfg, *cfgPath, log)
	case "keys":
		return keys(cfg, log, rest, stdout)
	case "users":
		return users(cfg, log, rest, stdout)
	case "token":
		return token(cfg, log, rest, stdout)
	case "migrate":
		st, err := sqlite.Open(cfg.Store.Path, sqlite.Options{Logger: log})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "migrations applied to", cfg.Store.Path)
		return st.Close()
	}
	fs.Usage()
	return fmt.Errorf("unknown command %q", cmd)
}

// loadConfig reads the config file; when the default file is absent the built-in defaults (with the demo
// upstream) are used, so the binary runs on its own.
func loadConfig(path string, stderr io.Writer) (*relay.Config, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && path == "config.yaml" {
		fmt.Fprintln(stderr, "relay: no config.yaml here; using built-in defaults with the demo upstream")
		return relay.DefaultConfig()
	}
	return relay.LoadConfig(path)
}

// withStore runs a CLI subcommand's work against the store, with a 30-second bound, and closes it.
func withStore(cfg *relay.Config, log *slog.Logger, fn func(ctx context.Context, st *sqlite.Store) error) error {
	st, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return fn(ctx, st)
}

func openStore(cfg *relay.Config, log *slog.Logger) (*sqlite.Store, error) {
	return sqlite.Open(cfg.Store.Path, sqlite.Options{
		QueueSize: cfg.Store.QueueSize, BatchSize: cfg.Store.BatchSize, FlushInterval: cfg.Store.FlushInterval,
		WriterNice: cfg.Store.WriterNice, Logger: log,
	})
}

func serve(cfg *relay.Config, cfgPath string, log *slog.Logger) error {
	// Signals are caught from the start: one that arrives while the relay opens its store or right after
	// it says it listens is handled below (a graceful stop, or a reload), not the default death.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	channels, err := cfg.BuildChannels(kinds.All())
	if err != nil {
		return err
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	srv := relay.NewServer(cfg, st, channels, log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		st.Close()
		return err
	}
	if cfg.Server.DebugListen != "" {
		stopDebug, err := startDebug(cfg.Server.DebugListen, log)
		if err != nil {
			ln.Close()
			st.Close()
			return err
		}
		defer stopDebug()
	}
	defer relay.StartGCHeadroom(uint64(cfg.Server.GCHeadroomBytes))()
	names := make([]string, 0, len(channels))
	for _, ch := range channels {
		names = append(names, ch.Name+"("+ch.Kind+")")
	}
	log.Info("relay listening", "addr", ln.Addr().String(), "channels", strings.Join(names, ","), "version", version)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	changed := watchConfig(cfgPath, log)
	for err == nil {
		select {
		case err = <-errc:
			log.Error("server stopped", "err", err)
			srv.Shutdown(context.Background()) // stops the job runner before the store closes
		case <-changed:
			reloadConfig(cfgPath, srv, log)
		case s := <-sig:
			if s == syscall.SIGHUP {
				reloadConfig(cfgPath, srv, log)
				continue
			}
			log.Info("shutting down", "signal", s.String(), "grace", cfg.Server.ShutdownGrace)
			err = srv.Shutdown(context.Background())
			if err == nil {
				err = errStopped
			}
		}
	}
	if errors.Is(err, errStopped) {
		err = nil
	}
	stats := st.Stats()
	if cerr := st.Close(); cerr != nil && err == nil {
		err = cerr
	}
	log.Info("stopped", "log_rows_written", st.Stats().Written, "queued_at_stop", stats.Queued)
	return err
}

func keys(cfg *relay.Config, log *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("keys: want create, list or revoke")
	}
	return withStore(cfg, log, func(ctx context.Context, st *sqlite.Store) error {
		switch args[0] {
		case "create":
			fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
			name := fs.String("name", "", "key name (required)")
			models := fs.String("models", "", "comma-separated models the key may use (default: all)")
			admin := fs.Bool("admin", false, "the key may also read operational endpoints (GET /v1/relay/channels)")
			rpm := fs.Int("rpm", 0, "requests per minute (0: no limit)")
			tpm := fs.Int("tpm", 0, "tokens per minute (0: no limit)")
			streams := fs.Int("max-streams", 0, "concurrent streams (0: no limit)")
			quota := fs.Int64("quota", 0, "total tokens the key may spend (0: no limit)")
			owner := fs.String("user", "", "user (name or id) whose sessions the key's conversations are logged to")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			if *name == "" {
				return errors.New("keys create: --name is required")
			}
			secret, err := NewSecret()
			if err != nil {
				return err
			}
			if *rpm < 0 || *tpm < 0 || *streams < 0 || *quota < 0 {
				return errors.New("keys create: limits must not be negative")
			}
			k := store.Key{Name: *name, Prefix: secret[:12], Hash: relay.HashKey(secret), Admin: *admin,
				RPM: *rpm, TPM: *tpm, MaxStreams: *streams, QuotaTokens: *quota}
			if *owner != "" {
				u, err := findUser(ctx, st, *owner)
				if err != nil {
					return fmt.Errorf("keys create: %w", err)
				}
				k.UserID = u.ID
			}
			if *models != "" {
				for _, m := range strings.Split(*models, ",") {
					if m = strings.TrimSpace(m); m != "" {
						k.Models = append(k.Models, m)
					}
				}
			}
			if _, err := st.CreateKey(ctx, k); err != nil {
				return err
			}
			fmt.Fprintln(stdout, secret)
			return nil
		case "list":
			list, err := st.ListKeys(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tMODELS\tADMIN\tUSER\tLIMITS\tUSED\tCREATED\tSTATUS")
			for _, k := range list {
				status := "active"
				if !k.Active() {
					status = "revoked " + k.RevokedAt.UTC().Format(time.RFC3339)
				}
				models := strings.Join(k.Models, ",")
				if models == "" {
					models = "*"
				}
				limits := fmt.Sprintf("rpm=%d tpm=%d streams=%d quota=%d", k.RPM, k.TPM, k.MaxStreams, k.QuotaTokens)
				user := "-"
				if k.UserID != 0 {
					user = strconv.FormatInt(k.UserID, 10)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s…\t%s\t%v\t%s\t%s\t%d\t%s\t%s\n", k.ID, k.Name, k.Prefix, models, k.Admin, user, limits, k.UsedTokens,
					k.CreatedAt.UTC().Format(time.RFC3339), status)
			}
			return tw.Flush()
		case "revoke":
			if len(args) != 2 {
				return errors.New("keys revoke: want one NAME or ID")
			}
			if err := st.RevokeKey(ctx, args[1]); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("keys revoke: no active key named %q", args[1])
				}
				return err
			}
			fmt.Fprintln(stdout, "revoked", args[1])
			return nil
		}
		return fmt.Errorf("keys: unknown subcommand %q", args[0])
	})
}

// NewSecret returns a new relay key: "sk-relay-" and 32 base-62 characters (190 bits).
func NewSecret() (string, error) {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	out := []byte("sk-relay-")
	var b [1]byte
	for len(out) < 9+32 {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		if b[0] < 248 { // 248 = 4*62: reject to keep the choice uniform
			out = append(out, alphabet[int(b[0])%62])
		}
	}
	return string(out), nil
}

var errStopped = errors.New("stopped")

// reloadConfig reads the config file again and puts its channels and workflows in force. A config that
// fails to load or validate is refused with a log line; the one in force stays.
func reloadConfig(path string, srv *relay.Server, log *slog.Logger) bool {
	if _, err := os.Stat(path); err != nil {
		log.Error("config reload refused", "err", err)
		return false
	}
	cfg, err := relay.LoadConfig(path)
	if err == nil {
		var chans []*relay.Channel
		if chans, err = cfg.BuildChannels(kinds.All()); err == nil {
			srv.Reload(cfg, chans)
			return true
		}
	}
	log.Error("config reload refused; the previous config stays in force", "err", err)
	return false
}

// watchConfig reports changes of the config file (its folder is watched, so editors that replace the
// file are seen too), debounced. It returns a nil channel when there is nothing to watch.
func watchConfig(path string, log *slog.Logger) <-chan struct{} {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	if _, err := os.Stat(abs); err != nil {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("config file watch unavailable; SIGHUP still reloads", "err", err)
		return nil
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		w.Close()
		log.Warn("config file watch unavailable; SIGHUP still reloads", "err", err)
		return nil
	}
	out := make(chan struct{}, 1)
	go func() {
		var debounce <-chan time.Time
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
					debounce = time.After(250 * time.Millisecond)
				}
			case <-debounce:
				debounce = nil
				select {
				case out <- struct{}{}:
				default:
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return out
}
