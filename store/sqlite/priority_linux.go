package sqlite

import "syscall"

// lowerThreadPriority gives the calling thread the nice value n. On Linux the nice value belongs to the
// thread, not the process (setpriority(2) with a thread ID), so only the writer's thread is affected.
// The caller has locked its goroutine to the thread and must not unlock it afterwards: the runtime would
// run other goroutines on a niced thread. A goroutine that exits while locked takes its thread with it.
// The main thread is refused (errMainThread): the runtime never ends it, and tools show its nice value
// as the whole process's.
func lowerThreadPriority(n int) error {
	tid := syscall.Gettid()
	if tid == syscall.Getpid() {
		return errMainThread
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, n)
}
