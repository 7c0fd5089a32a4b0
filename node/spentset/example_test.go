package spentset_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/spentset"
	"github.com/scripnet/scrip/protocol"
)

// A server records the coins of a paid call, stores its answer, answers a
// retry from the record, and refuses the same coin for another request.
func Example() {
	dir, err := os.MkdirTemp("", "spentset-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := spentset.Open(filepath.Join(dir, "spent.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	// A verified spend (the store does not verify; see Record).
	sp := &coin.Spend{Coin: coin.Coin{Amount: 4, Pub: [32]byte{1}}}
	id, digest := [16]byte{0xa}, [32]byte{0xd}

	if _, err := s.Record(ctx, id, digest, []*coin.Spend{sp}, 4); err != nil {
		log.Fatal(err)
	}
	if err := s.Answer(ctx, id, digest, []byte("served")); err != nil {
		log.Fatal(err)
	}

	retry, err := s.Record(ctx, id, digest, []*coin.Spend{sp}, 4)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("retry: replay=%v answer=%q\n", retry.Replay, retry.Answer)

	_, err = s.Record(ctx, [16]byte{0xb}, [32]byte{0xe}, []*coin.Spend{sp}, 4)
	fmt.Println("other request:", errors.Is(err, protocol.ErrDoubleSpend))

	st, err := s.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pending: %d coin(s), %d units, %d bearer\n", st.Pending, st.PendingValue, st.PendingBearer)
	// Output:
	// retry: replay=true answer="served"
	// other request: true
	// pending: 1 coin(s), 4 units, 4 bearer
}
