package adaptor

// Pender is implemented by Events whose reader can tell that the next event's bytes have already
// arrived. The pump then writes the current chunk without flushing it, so a burst of upstream events
// leaves the relay in one write.
type Pender interface {
	Pending() bool
}
