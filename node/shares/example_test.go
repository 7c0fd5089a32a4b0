package shares_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/node/shares"
	"github.com/scripnet/scrip/protocol"
)

// A writer allocates a share, fills it and closes it; then anyone reads it.
func Example() {
	dir, err := os.MkdirTemp("", "shares-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := shares.Open(dir, 1<<20) // offer 1 MiB
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	writer := peer.ID("writer") // a libp2p peer ID in real use
	si := [16]byte{0x51}

	a := &protocol.Allocation{Writer: writer, StorageIndex: si, Shares: []uint32{0}, Size: 11, Lease: 24 * time.Hour}
	if err := s.CheckAllocate(ctx, a); err != nil { // before taking coins
		log.Fatal(err)
	}
	got, err := s.Allocate(ctx, a)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("allocated:", got.Allocated)
	if err := s.Write(ctx, writer, si, 0, 0, []byte("hello share")); err != nil {
		log.Fatal(err)
	}
	if err := s.CloseShare(ctx, writer, si, 0); err != nil {
		log.Fatal(err)
	}
	data, err := s.Read(ctx, si, 0, 6, 100)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("read: %q\n", data)
	u := s.Usage()
	fmt.Println("stored:", u.Stored, "available:", u.Available)
	// Output:
	// allocated: [0]
	// read: "share"
	// stored: 11 available: 1048565
}
