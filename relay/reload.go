package relay

// Config reload: channels (with their aliases, keys, timeouts and limits) and workflows are swapped whole
// while the relay serves. A request in flight keeps the channel it picked and finishes on it. Channels
// that keep their name keep their circuit breaker (a tripped channel stays tripped). Listen address,
// store, server limits and auth settings need a restart.

// workflowsNow is the workflow table in force.
func (s *Server) workflowsNow() map[string]*workflow { return *s.workflows.Load() }

// Reload puts a new, already validated configuration's channels and workflows in force.
func (s *Server) Reload(cfg *Config, channels []*Channel) {
	old := map[string]*Channel{}
	for _, ch := range s.core.router.Load().Channels() {
		old[ch.Name] = ch
	}
	for _, ch := range channels {
		if prev := old[ch.Name]; prev != nil && prev.breaker != nil {
			ch.breaker = prev.breaker
		}
	}
	router := NewRouter(channels)
	wf := buildWorkflows(cfg, channels, s.log)
	s.workflows.Store(&wf)
	s.bp.Store(cfg.bpTablesOf())
	s.core.router.Store(router)
	s.core.metrics.setServed(router)
	s.core.metrics.setChannels(router, channels)
	if cfg.Listen != s.cfg.Listen || cfg.Store != s.cfg.Store || cfg.Server != s.cfg.Server || cfg.Auth != s.cfg.Auth {
		s.log.Warn("config reload: listen, store, server and auth settings take effect at the next restart")
	}
	s.log.Info("config reloaded", "channels", len(channels), "models", len(router.Models()), "workflows", len(wf))
}
