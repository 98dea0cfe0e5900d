package main

import "syscall"

// childSysProcAttr kills children with the harness, so an interrupted run leaves no orphans.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
