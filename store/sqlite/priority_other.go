//go:build !linux

package sqlite

import "errors"

// lowerThreadPriority is Linux-only: elsewhere a nice value applies to the whole process.
func lowerThreadPriority(int) error {
	return errors.New("a thread's priority can only be lowered on Linux")
}
