package mintstore

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Fuzz targets of the decoders added with the restore guard and recoup:
// the guard file, the backup marker, and the mint's Recoup call over this
// package's store. All run as ordinary tests on their seeds, which come
// from a real store: its guard file, the marker of a backup of it, and
// Recoup requests for coins it issued.

// guardSeeds opens a store with a keyset, backs it up, and returns its
// guard file and the backup's marker.
func guardSeeds(f *testing.F) (guardBytes, marker []byte) {
	f.Helper()
	dir := f.TempDir()
	path := filepath.Join(dir, "mint.db")
	s, err := Open(path, WithGuardInterval(0))
	require.NoError(f, err)
	k := openKeys(f, s, &clock{now: t0}) // seeded keys: the same seeds every run
	_, err = k.Generate(context.Background(), testPolicy, t0)
	require.NoError(f, err)
	backup := filepath.Join(dir, "backup.db")
	info, err := s.BackupFile(backup)
	require.NoError(f, err)
	require.NotEmpty(f, info.Issuing)
	require.NoError(f, s.Close())
	guardBytes, err = os.ReadFile(path + GuardSuffix)
	require.NoError(f, err)
	db, err := bolt.Open(backup, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(f, err)
	defer db.Close()
	require.NoError(f, db.View(func(tx *bolt.Tx) error {
		marker = bytes.Clone(tx.Bucket(bucketMeta).Get(keyBackup))
		return nil
	}))
	require.NotEmpty(f, marker)
	return guardBytes, marker
}

// FuzzGuardFile: parseGuardFile never panics, refuses more than
// maxGuardFile bytes, and what it accepts encodes (as writeGuardFile
// does) to a file that parses to the same record.
func FuzzGuardFile(f *testing.F) {
	g, _ := guardSeeds(f)
	f.Add(g)
	f.Add([]byte(`{"version":1,"instance":"00112233445566778899aabbccddeeff","epoch":18446744073709551615}`))
	f.Add([]byte(`{"version":2}`))
	f.Add(bytes.Repeat([]byte(" "), maxGuardFile+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		gf, err := parseGuardFile(b)
		if err != nil {
			return
		}
		if len(b) > maxGuardFile {
			t.Fatalf("accepted %d bytes", len(b))
		}
		again, err := json.MarshalIndent(gf, "", "  ")
		require.NoError(t, err)
		gf2, err := parseGuardFile(again)
		require.NoError(t, err)
		require.Equal(t, gf, gf2)
	})
}

// FuzzBackupMarker: decodeBackupMarker never panics nor allocates for IDs
// it does not hold, and re-encoding what it accepts gives the same bytes.
func FuzzBackupMarker(f *testing.F) {
	_, m := guardSeeds(f)
	f.Add(m)
	f.Add(encodeBackupMarker(&backupMarker{}))
	f.Add(m[:len(m)-1])
	f.Add(append(bytes.Clone(m), 0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeBackupMarker(b)
		if err != nil {
			return
		}
		if got := encodeBackupMarker(&m); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x, decoded %x", got, b)
		}
	})
}

// FuzzAttackMintRecoup feeds arbitrary Recoup bodies to the mint service
// over this package's store (a protocol.MintRecouper), with spends that
// the harness signs, as the coins' holder would, for the mint and the
// digest of whatever body the fuzzer made: so the proofs, the funding
// code and the request ID are the fuzzer's, and calls reach the
// recomputation of the challenges and the store. Nothing panics, answers
// fit the response cap, no coin is recouped more than once, no more value
// is recouped than was issued, the coin forged with the revoked keyset's
// key is never credited, and no server is credited.
func FuzzAttackMintRecoup(f *testing.F) {
	ctx := context.Background()
	s, _ := openTemp(f)
	c := &clock{now: t0}
	k := openKeys(f, s, c)
	ks, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(f, err)
	sec := secretOf(f, s, ks.ID())
	is := newIssuer(f, s)
	coins := []issued{is.withdraw(sec, t0, 4, false), is.withdraw(sec, t0, 8, false), is.withdraw(sec, t0, 8, true)}
	const forged = 2
	var issuedValue uint64
	for _, x := range coins[:forged] {
		issuedValue += x.c.Amount
	}
	require.NoError(f, k.Revoke(ctx, ks.ID()))
	c.Set(t0.Add(time.Minute))
	mint := peer.ID("\x00\x24\x08\x01\x12\x20" + strings.Repeat("m", 32))
	remote := peer.ID("\x00\x24\x08\x01\x12\x20" + strings.Repeat("r", 32))
	svc := protocol.NewMintService(mint, k.Keyring(), s, protocol.NewVoucherFunding(s, [32]byte{'k'}), protocol.WithMintClock(c.Now))

	proof := func(x issued) coin.RecoupProof {
		sg, err := sec.Signer(x.c.Amount)
		require.NoError(f, err)
		r0, r1 := sg.Begin(x.row.Nonce)
		p, _, err := coin.NewRecoupProof(&is.seed, ks, x.c, x.row.Nonce, r0, r1)
		require.NoError(f, err)
		return p
	}
	code := []byte("abcdefghijklmnopqrstuvwxyz234567")
	for _, seed := range []struct {
		mask uint8
		idx  []int
	}{{0b001, []int{0}}, {0b011, []int{0, 1}}, {0b100, []int{forged}}, {0b101, []int{0, forged}}} {
		var ps []coin.RecoupProof
		for _, i := range seed.idx {
			ps = append(ps, proof(coins[i]))
		}
		body, err := protocol.RecoupBody([protocol.RequestIDSize]byte{seed.mask}, code, ps)
		require.NoError(f, err)
		f.Add(body, seed.mask)
	}
	f.Add([]byte{}, uint8(1))

	f.Fuzz(func(t *testing.T, body []byte, mask uint8) {
		digest := protocol.RequestDigest(protocol.MintID, body)
		req := &pb.Request{Body: body}
		var picked []int
		for i, x := range coins {
			if mask&(1<<i) != 0 {
				sp, err := coin.NewSpend(x.c, x.key, []byte(mint), digest)
				require.NoError(t, err)
				req.Spends = append(req.Spends, sp.Bytes())
				picked = append(picked, i)
			}
		}
		resp, err := svc.Handle(ctx, remote, req)
		if err != nil {
			protocol.EncodeError(err)
		} else {
			require.LessOrEqual(t, proto.Size(resp), protocol.MaxMintResponseSize)
			mr := new(pb.MintResponse)
			require.NoError(t, proto.Unmarshal(resp.Body, mr))
			if r := mr.GetRecoup(); r != nil {
				for j, res := range r.Results {
					if j < len(picked) && picked[j] == forged && res.Status == pb.DepositStatus_DEPOSIT_CREDITED {
						t.Fatal("the forged coin was recouped")
					}
				}
			}
		}
		var recouped uint64
		entries, err := s.Audit(ctx)
		require.NoError(t, err)
		for _, e := range entries {
			if e.Recouped > e.Withdrawn {
				t.Fatalf("%d coins of %d recouped, %d issued", e.Recouped, e.Amount, e.Withdrawn)
			}
			recouped += e.Recouped * e.Amount
		}
		require.LessOrEqual(t, recouped, issuedValue)
		b, err := s.Balance(ctx, remote)
		require.NoError(t, err)
		require.Empty(t, b)
	})
}
