//go:build !linux

package spentset

// fsType names the filesystem that holds dir; only Linux is known.
func fsType(string) string { return "unknown filesystem" }
