//go:build !linux

package main

import "syscall"

// childSysProcAttr: only Linux can tie a child's life to its parent; elsewhere stop() does it.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
