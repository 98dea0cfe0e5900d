//go:build !linux

package sqlite

// lowerThreadPriority is Linux-only: elsewhere a nice value applies to the whole process.
func lowerThreadPriority(int) error { return errNotLinux }
