package protocol_test

import (
	"fmt"

	"github.com/scripnet/scrip/protocol"
)

func ExampleQuote() {
	rates := protocol.Rates{PerCall: 10, StorePerGiBMonth: 50_000, WritePerGiB: 1_000}
	// Allocate 3 shares of 100 MiB for 90 days.
	share := uint64(100 << 20)
	usage := protocol.Usage{
		StoreBytes:   3 * share,
		StoreSeconds: 90 * 24 * 60 * 60,
		WriteBytes:   3 * share,
	}
	price, err := protocol.Quote(rates, usage)
	if err != nil {
		panic(err)
	}
	fmt.Println(price)
	// Output: 44249
}
