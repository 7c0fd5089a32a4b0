package node

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/protocol/pb"
)

// TestLoadIdentity: a key is made once, mode 0600, and read back the
// same; a wider mode is narrowed; other key types and garbage are refused.
func TestLoadIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", IdentityFile)
	k1, err := LoadIdentity(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	k2, err := LoadIdentity(path)
	require.NoError(t, err)
	assert.True(t, k1.Equals(k2))

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = LoadIdentity(path)
	require.NoError(t, err)
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	other, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	require.NoError(t, err)
	b, err := crypto.MarshalPrivateKey(other)
	require.NoError(t, err)
	bad := filepath.Join(t.TempDir(), IdentityFile)
	require.NoError(t, os.WriteFile(bad, b, 0o600))
	_, err = LoadIdentity(bad)
	assert.ErrorIs(t, err, ErrIdentity)
	require.NoError(t, os.WriteFile(bad, []byte("not a key"), 0o600))
	_, err = LoadIdentity(bad)
	assert.ErrorIs(t, err, ErrIdentity)
}

// TestNewHost: a host listens on loopback TCP and QUIC by default, with
// the identity of its key file.
func TestNewHost(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	path := filepath.Join(t.TempDir(), IdentityFile)
	h, err := NewHost(context.Background(), HostConfig{KeyFile: path})
	require.NoError(t, err)
	key, err := LoadIdentity(path)
	require.NoError(t, err)
	assert.True(t, key.GetPublic().Equals(h.Peerstore().PubKey(h.ID())))
	var tcp, quic bool
	for _, a := range h.Addrs() {
		s := a.String()
		tcp = tcp || filepath.Dir(s) == "/ip4/127.0.0.1/tcp"
		quic = quic || filepath.Base(s) == "quic-v1"
	}
	assert.True(t, tcp && quic, "addresses %v", h.Addrs())
	ann := HostAnnouncement(RoleServer, h)
	info, err := ann.AddrInfo()
	require.NoError(t, err)
	assert.Equal(t, h.ID(), info.ID)
	require.NoError(t, h.Close())

	_, err = NewHost(context.Background(), HostConfig{})
	assert.ErrorIs(t, err, ErrIdentity)
	checkLeaks()
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:7390": true, "127.0.0.2:1": true, "[::1]:0": true, "localhost:80": true,
		"0.0.0.0:7390": false, ":7390": false, "[::]:1": false, "10.0.0.1:1": false, "example.com:1": false, "127.0.0.1": false,
	} {
		err := checkLoopback(addr)
		assert.Equal(t, ok, err == nil, "%s: %v", addr, err)
	}
}

func TestOpOf(t *testing.T) {
	body, err := proto.Marshal(&pb.StorageRequest{RequestId: make([]byte, 16), Op: &pb.StorageRequest_Read{Read: &pb.Read{Length: 5}}})
	require.NoError(t, err)
	assert.Equal(t, "read", opOf(body, storageOpNames))
	body, err = proto.Marshal(&pb.MintRequest{Op: &pb.MintRequest_WithdrawFinish{WithdrawFinish: &pb.WithdrawFinish{}}})
	require.NoError(t, err)
	assert.Equal(t, "withdraw_finish", opOf(body, mintOpNames))
	assert.Equal(t, "unknown", opOf(nil, mintOpNames))
	assert.Equal(t, "unknown", opOf([]byte{0xff}, mintOpNames))
}
