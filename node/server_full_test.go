package node

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestServerFullDisk: a server whose offered space is used up refuses an
// Allocate with NO_SPACE before it records any coin: its spent set holds
// only the coins of the calls it served, and the client's coins for the
// refused call stay its own (the wallet is told nothing was recorded).
func TestServerFullDisk(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mintDir, dir1, _ := roleDirs(t)
	mint := roleMint(t, mintDir)
	defer mint.Close()
	voucher, err := roleAdmin(t, mintDir).NewVoucher(ctx, "", 100_000)
	require.NoError(t, err)
	s := roleServer(t, dir1, mint.Announcement(), func(c *ServerConfig) { c.Capacity = 64 << 10 })
	defer s.Close()
	client := newRoleClient(t, mint)
	defer client.host.Close()
	client.connect(t, s)
	client.withdraw(t, client.issuing(t), voucher, "", roleChange(40)...)
	sc := client.storage()
	id := s.Host().ID()

	// 48 KiB fits in the 64 KiB offered; then 32 KiB more does not.
	var si [protocol.StorageIndexSize]byte
	rand.Read(si[:])
	_, err = sc.Allocate(ctx, id, &pb.Allocate{StorageIndex: si[:], ShareNumbers: []uint32{0}, AllocatedSize: 48 << 10, LeaseSeconds: 86400})
	require.NoError(t, err)
	before, err := s.Spent().Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, before.Requests)
	paid := client.wallet.spent(id)

	rand.Read(si[:])
	_, err = sc.Allocate(ctx, id, &pb.Allocate{StorageIndex: si[:], ShareNumbers: []uint32{1}, AllocatedSize: 32 << 10, LeaseSeconds: 86400})
	require.ErrorIs(t, err, protocol.ErrNoSpace)
	require.Equal(t, protocol.OutcomeRefused, protocol.OutcomeOf(err), "the client is told nothing was recorded")
	after, err := s.Spent().Stats(ctx)
	require.NoError(t, err)
	// (The deposit loop may credit the first call's coins meanwhile.)
	require.Equal(t, before.Coins, after.Coins, "no coin recorded for the refused call")
	require.Equal(t, before.Requests, after.Requests)
	require.Equal(t, before.PendingValue+before.CreditedValue+before.LostValue,
		after.PendingValue+after.CreditedValue+after.LostValue, "no value recorded for the refused call")
	require.Equal(t, paid, client.wallet.spent(id), "the refused call cost nothing")

	client.host.Close()
	require.NoError(t, s.Close())
	require.NoError(t, mint.Close())
	checkLeaks()
}
