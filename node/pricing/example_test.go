package pricing_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/protocol"
)

// A server's agent, asked every hour: a week without sales halves the
// space rates; a week of brisk sales doubles them again.
func ExampleTargetAgent() {
	agent, err := pricing.NewTargetAgent(pricing.WithJitter(0)) // jitter off, to print exact figures
	if err != nil {
		panic(err)
	}
	const tib = 1 << 40
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sold := make([]uint64, 24) // bytes sold in each of the last 24 hours
	for h := 0; h <= 14*24; h++ {
		s := pricing.State{Now: start.Add(time.Duration(h) * time.Hour), Capacity: tib, Used: tib / 2, Period: time.Hour, Sold: sold}
		d, err := agent.Price(context.Background(), s)
		if err != nil {
			panic(err)
		}
		if h%(7*24) == 0 {
			fmt.Printf("day %2d: %+v\n", h/24, d.Rates)
		}
		if h == 7*24 {
			for i := range sold {
				sold[i] = tib / 20 / 24 // from now on, 5 % of the disk a day
			}
		}
	}
	// Output:
	// day  0: {PerCall:10 StorePerGiBMonth:50000 ReadPerGiB:1000 WritePerGiB:1000}
	// day  7: {PerCall:10 StorePerGiBMonth:25000 ReadPerGiB:1000 WritePerGiB:500}
	// day 14: {PerCall:10 StorePerGiBMonth:50000 ReadPerGiB:1000 WritePerGiB:1000}
}

// Jitter comes from the source given, so a seeded agent repeats itself.
func ExampleWithRand() {
	for range 2 {
		agent, err := pricing.NewTargetAgent(pricing.WithRand(rand.NewPCG(1, 2)))
		if err != nil {
			panic(err)
		}
		var store []uint64
		for range 3 {
			d, _ := agent.Price(context.Background(), pricing.State{Capacity: 1 << 40})
			store = append(store, d.Rates.StorePerGiBMonth)
		}
		fmt.Println(store)
	}
	// Output:
	// [50017 50209 50910]
	// [50017 50209 50910]
}

// A client places the shares of one file: it has seen the schedules of
// its servers, walks the file's ring and takes the first servers within
// its ceiling.
func ExampleMarket_Select() {
	market, err := pricing.NewMarket("msat")
	if err != nil {
		panic(err)
	}
	// Peer IDs are short names here, to print.
	prices := map[peer.ID]uint64{"ann": 90, "bob": 100, "cat": 100, "dan": 110, "eve": 110, "fay": 400, "gus": 100, "hal": 300}
	var servers []peer.ID
	for id, p := range prices {
		servers = append(servers, id)
		// Schedules as received and verified (protocol.VerifySchedule).
		if err := market.Observe(protocol.Schedule{Server: id, Unit: "msat", Rates: protocol.Rates{StorePerGiBMonth: p}}); err != nil {
			panic(err)
		}
	}
	ring := protocol.Ring([]byte("0123456789abcdef"), servers)
	share := protocol.Usage{StoreBytes: protocol.GiB, StoreSeconds: protocol.Month} // one share: 1 GiB for a month

	sel, err := market.Select(ring, share, 3, 4)
	if err != nil {
		panic(err)
	}
	names := func(ids []peer.ID) (s []string) {
		for _, id := range ids {
			s = append(s, string(id))
		}
		return s
	}
	fmt.Println("ring:", names(ring))
	fmt.Println("ceiling:", sel.Ceiling)
	fmt.Println("chosen:", names(sel.Servers), sel.Quotes, sel.Limits)

	_, err = market.Select(ring, share, 7, 10)
	fmt.Println(err)
	// Output:
	// ring: [cat gus ann hal eve bob fay dan]
	// ceiling: 110
	// chosen: [cat gus ann eve] [100 100 90 110] [121 121 121 110]
	// pricing: need 7 servers, found 6 of 8 within the ceiling of 110 msat a share (prices seen: 90, 100, 100, 100, 110, 110, 300, 400; 2 above the ceiling)
}

// A server that took coins without serving is skipped for uploads for a
// day.
func ExampleScores() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	scores, err := pricing.NewScores(pricing.WithScoreClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	scores.Report("bob", pricing.EventCoinsTaken)
	fmt.Println(scores.Penalised("bob"), scores.PenalisedUntil("bob"))
	now = now.Add(25 * time.Hour)
	fmt.Printf("%v %.2f\n", scores.Penalised("bob"), scores.Score("bob"))
	// Output:
	// true 2026-01-02 00:00:00 +0000 UTC
	// false 3.89
}
