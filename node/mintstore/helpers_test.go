package mintstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

func TestMain(m *testing.M) {
	if crashChild() || guardChild() {
		return
	}
	os.Exit(m.Run())
}

// openTemp opens a store in a new file of a test directory and closes it
// when the test ends (closing twice is harmless).
func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mint.db")
	s, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, path
}

// reopen closes s and opens the file at path again.
func reopen(t testing.TB, s *Store, path string) *Store {
	t.Helper()
	require.NoError(t, s.Close())
	s2, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { s2.Close() })
	return s2
}

// row makes a row under key for nonce with challenge hash ch.
func row(key, nonce, ch byte, amount uint64) protocol.IssueRow {
	return protocol.IssueRow{
		Row:    coin.Row{Key: [32]byte{key}, Nonce: [32]byte{nonce}, ChallengeHash: [32]byte{ch}, B: ch & 1, S: [32]byte{ch, 's'}},
		Amount: amount,
	}
}

// spend makes a spent-set record of coin pub for server and digest.
func spend(pub byte, server peer.ID, digest byte, amount uint64) protocol.SpendRecord {
	return protocol.SpendRecord{Pub: [32]byte{pub}, Unit: "msat", Amount: amount, Server: server,
		Digest: [32]byte{digest}, Spend: bytes.Repeat([]byte{pub}, coin.SpendSize)}
}

func openFunding(t testing.TB, s protocol.FundingLedger, id byte, value uint64) [32]byte {
	t.Helper()
	acct := [32]byte{id}
	require.NoError(t, s.OpenFunding(context.Background(), acct, "msat", value))
	return acct
}

func remaining(t testing.TB, s protocol.FundingLedger, acct [32]byte) uint64 {
	t.Helper()
	a, err := s.FundingAccount(context.Background(), acct)
	require.NoError(t, err)
	return a.Remaining
}

// check runs Store.Check on s if it is a *Store.
func check(t testing.TB, s protocol.MintStore) {
	t.Helper()
	if b, ok := s.(*Store); ok {
		require.NoError(t, b.Check(context.Background()))
	}
}

// mintRequest wraps mr in a request envelope for MintService.Handle.
func mintRequest(t testing.TB, mr *pb.MintRequest) *pb.Request {
	t.Helper()
	body, err := proto.Marshal(mr)
	require.NoError(t, err)
	return &pb.Request{Body: body}
}

// mintResponse decodes the body of a MintService.Handle answer.
func mintResponse(t testing.TB, resp *pb.Response) *pb.MintResponse {
	t.Helper()
	out := new(pb.MintResponse)
	require.NoError(t, proto.Unmarshal(resp.Body, out))
	return out
}
