package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/scripnet/scrip/node"
)

// ExampleNewServer runs a mint and a storage server in one process: the
// mint's admin endpoint sells a voucher, and the server, pointed at the
// mint's announcement, publishes prices in the mint's unit and has nothing
// credited yet.
func ExampleNewServer() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "scrip-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	mint, err := node.NewMint(ctx, node.MintConfig{Dir: filepath.Join(dir, "mint"), AdminAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		panic(err)
	}
	defer mint.Close()
	admin := node.NewAdminClient(mint.AdminURL(), mint.AdminToken())
	code, err := admin.NewVoucher(ctx, "", 1000)
	if err != nil {
		panic(err)
	}

	server, err := node.NewServer(ctx, node.ServerConfig{
		Dir:      filepath.Join(dir, "server"),
		Capacity: 10 << 30,
		Mint:     mint.Announcement(),
		Logger:   quiet,
	})
	if err != nil {
		panic(err)
	}
	defer server.Close()
	balance, err := server.Balance(ctx)
	fmt.Printf("a voucher of %d characters; prices in %s; balance %v %v\n", len(code), server.Unit(), balance, err)
	// Output:
	// a voucher of 32 characters; prices in msat; balance [] <nil>
}
