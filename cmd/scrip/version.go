package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

func init() {
	register(command{
		name:    "version",
		summary: "print scrip's version",
		run: func(context.Context, []string) error {
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			fmt.Println("scrip", v)
			return nil
		},
	})
}
