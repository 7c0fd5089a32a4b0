package protocol

import (
	"encoding/hex"
	"testing"
)

func TestRequestDigest(t *testing.T) {
	tests := []struct {
		id, body, want string
	}{
		{StorageID, "hello", "e9f3c30bbfc930148ce10e10ad858ecdc9984af6a78c243e270b910d2afd8457"},
		{MintID, "", "39a184391b77fdd6a3e7fbda28c0cbedab5b5fc0fc019af30a05777cf7085c0f"},
	}
	for _, tt := range tests {
		got := RequestDigest(tt.id, []byte(tt.body))
		if hex.EncodeToString(got[:]) != tt.want {
			t.Errorf("%s %q: got %x", tt.id, tt.body, got)
		}
	}
	// The protocol ID is length-prefixed: moving bytes between it and the
	// body changes the digest.
	if RequestDigest("/a", []byte("b")) == RequestDigest("/", []byte("ab")) {
		t.Error("ID and body not separated")
	}
}
