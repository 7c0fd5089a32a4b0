package mintstore_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/scripnet/scrip/node/mintstore"
	"github.com/scripnet/scrip/protocol"
)

// Example sets up a mint's state: the store, its keysets, voucher funding
// over the store, and the mint service over all three. A mint calls
// Rotate when it starts and then periodically, and Prune now and then.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "mint")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := mintstore.Open(filepath.Join(dir, "mint.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	_, identity, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := mintstore.OpenKeys(ctx, store, identity)
	if err != nil {
		log.Fatal(err)
	}
	ks, err := keys.Rotate(ctx, mintstore.DefaultKeyPolicy("msat"))
	if err != nil {
		log.Fatal(err)
	}
	funding := protocol.NewVoucherFunding(store, [32]byte{ /* a secret of the mint */ 1})
	code, err := funding.CreateVoucher(ctx, rand.Reader, "msat", 100_000)
	if err != nil {
		log.Fatal(err)
	}
	_ = code // sold out of band
	// The service, for a libp2p host h of the mint:
	//   svc := protocol.NewMintService(h.ID(), keys.Keyring(), store, funding)
	//   svc.Register(h)

	fmt.Println(len(keys.Keysets()), "keyset of", len(ks.Denominations), "denominations in", ks.Unit)
	fi, err := os.Stat(filepath.Join(dir, "mint.db"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("file mode", fi.Mode().Perm())
	// Output:
	// 1 keyset of 32 denominations in msat
	// file mode -rw-------
}
