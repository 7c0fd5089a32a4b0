package files_test

import (
	"fmt"

	"github.com/scripnet/scrip/node/files"
)

// Example encodes a file into ten shares, loses seven of them, corrupts
// one more, and reads the file back from what is left.
func Example() {
	c, shares, err := files.EncodeBytes([]byte("hello, grid"), files.DefaultK, files.DefaultN)
	if err != nil {
		panic(err)
	}
	// The capability travels as text; it is a secret, so never log it.
	text := c.String()

	// A reader parses it and fetches shares from servers, reading at most
	// ShareSize bytes from each.
	rc, err := files.ParseCapability(text)
	if err != nil {
		panic(err)
	}
	corrupt := append([]byte(nil), shares[4]...)
	corrupt[len(corrupt)-1] ^= 1
	got := [][]byte{shares[9], corrupt, shares[2], shares[7]}

	plain, bad, err := files.Decode(rc, got)
	fmt.Printf("%s %v\n", plain, err)
	for _, b := range bad {
		fmt.Println("bad share from server", b.Index)
	}
	fmt.Println(rc) // redacted
	// Output:
	// hello, grid <nil>
	// bad share from server 1
	// files.Capability{k: 3, n: 10, size: 11}
}
