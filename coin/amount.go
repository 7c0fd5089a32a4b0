package coin

import (
	"fmt"
	"math/bits"
	"slices"
)

// Decompose returns the powers of two that sum to amount, largest first: the
// coins needed to hold amount with the fewest coins.
func Decompose(amount uint64) []uint64 {
	out := make([]uint64, 0, bits.OnesCount64(amount))
	for amount != 0 {
		top := uint64(1) << (63 - bits.LeadingZeros64(amount))
		out = append(out, top)
		amount &^= top
	}
	return out
}

// Select returns the indices of coins (given by their amounts, each a power
// of two) that sum to price exactly, taking larger coins first. It returns an
// error wrapping [ErrNoExactChange] if no subset does; the caller then swaps
// for change. With power-of-two amounts the greedy choice finds an exact
// subset whenever one exists.
func Select(amounts []uint64, price uint64) ([]int, error) {
	order := make([]int, len(amounts))
	for i, a := range amounts {
		if a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: amount %d is not a power of two", ErrMalformed, a)
		}
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case amounts[a] > amounts[b]:
			return -1
		case amounts[a] < amounts[b]:
			return 1
		}
		return 0
	})
	var picked []int
	rest := price
	for _, i := range order {
		if rest == 0 {
			break
		}
		if a := amounts[i]; a <= rest {
			picked = append(picked, i)
			rest -= amounts[i]
		}
	}
	if rest != 0 {
		return nil, fmt.Errorf("%w: %d of %d left over", ErrNoExactChange, rest, price)
	}
	return picked, nil
}
