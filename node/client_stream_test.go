package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/node/files"
)

// Uploads and downloads that stream: shares written and read a window
// at a time, with servers that fail or corrupt part-way through.

// smallWindows makes uploads write and downloads read in small pieces,
// so that files of a few hundred KiB take many windows.
func smallWindows(t *testing.T) {
	oldChunk, oldWindow := putChunk, getWindow
	putChunk, getWindow = 24<<10, 48<<10
	t.Cleanup(func() { putChunk, getWindow = oldChunk, oldWindow })
}

// holder returns the index in g.servers of the server holding share n.
func holder(t *testing.T, g *cgGrid, rep *PutReport, n int) int {
	t.Helper()
	for _, sh := range rep.Shares {
		if sh.Share == n {
			for i, s := range g.servers {
				if s.host.ID().String() == sh.Server {
					return i
				}
			}
		}
	}
	t.Fatalf("no holder of share %d", n)
	return -1
}

// flipAt returns a read hook that flips one bit of share n at offset at.
func flipAt(n uint32, at uint64) readHook {
	return func(share uint32, off uint64, data []byte) ([]byte, error) {
		if share == n && off <= at && at < off+uint64(len(data)) {
			data = bytes.Clone(data)
			data[at-off] ^= 0x10
		}
		return data, nil
	}
}

func getOK(t *testing.T, c *Client, capText string, want []byte) *GetReport {
	t.Helper()
	var out bytes.Buffer
	rep, err := c.Get(cgCtx(t), capText, &out)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, out.Bytes()), "the file came back different")
	return rep
}

func usedServers(rep *GetReport) map[string]bool {
	m := make(map[string]bool)
	for _, sh := range rep.Shares {
		m[sh.Server] = true
	}
	return m
}

// TestClientStreamGet reads a file of many windows while its servers
// corrupt a block mid-file, corrupt padding no segment looks at, or stop
// answering part-way: the file comes back whole each time, and corrupt
// shares are told to their servers.
func TestClientStreamGet(t *testing.T) {
	smallWindows(t)
	ctx := cgCtx(t)
	g, hooks := newDiskGrid(t, 10)
	// One server at a time, in ring order: the first three hold the data
	// shares, which the checks below expect the download to use (with
	// several at once, whichever answer first).
	c := g.client("", func(cfg *ClientConfig) { cfg.DownloadParallelism = 1 })
	_, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	// 16 segments; the last has 1,234 bytes, sealed 1,250: blocks of 417
	// bytes, the last data block ending with a byte of padding.
	data := cgRandom(t, 15*files.SegmentSize+1234)
	capText, rep, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	capab, err := files.ParseCapability(capText)
	require.NoError(t, err)
	require.Greater(t, uint64(capab.ShareSize()), 6*getWindow, "shares of many windows")

	grep := getOK(t, c, capText, data)
	require.Len(t, grep.Shares, 3)
	require.Empty(t, grep.Corrupt)
	for i, sh := range grep.Shares {
		require.Equal(t, i, sh.Share, "the data shares")
	}

	t.Run("corrupt block mid-file", func(t *testing.T) {
		h := holder(t, g, rep, 1)
		off, _ := capab.BlockRange(9)
		hooks[h].onRead(flipAt(1, uint64(off)+100))
		defer hooks[h].onRead(nil)
		grep := getOK(t, c, capText, data)
		bad := g.servers[h].host.ID()
		require.Equal(t, []string{bad.String()}, grep.Corrupt)
		require.Equal(t, []uint32{1}, hooks[h].advised())
		require.False(t, usedServers(grep)[bad.String()], "the corrupt share is not listed as used")
		require.True(t, c.scores.Penalised(bad), "a corrupt share penalises its server")
		require.GreaterOrEqual(t, len(grep.Shares), 3)
	})

	t.Run("corrupt padding", func(t *testing.T) {
		// Padding is not authenticated by its segment: only the hash of
		// the whole share, checked at its end, finds it. The file is
		// right all the same.
		h := holder(t, g, rep, 2)
		hooks[h].onRead(flipAt(2, uint64(capab.ShareSize())-1))
		defer hooks[h].onRead(nil)
		grep := getOK(t, c, capText, data)
		bad := g.servers[h].host.ID().String()
		require.Equal(t, []string{bad}, grep.Corrupt)
		require.Equal(t, []uint32{2}, hooks[h].advised())
		require.False(t, usedServers(grep)[bad])
	})

	t.Run("share gone mid-file", func(t *testing.T) {
		// Share 0 goes (its lease ended, say) once its second window is
		// read: Reads of the third are refused before they are paid. It
		// is replaced, from the segment where it stopped, by a share
		// listed elsewhere.
		h := holder(t, g, rep, 0)
		hooks[h].onRead(func(share uint32, off uint64, data []byte) ([]byte, error) {
			if share == 0 && off >= getWindow {
				hooks[h].gone.Store(1)
			}
			return data, nil
		})
		defer func() {
			hooks[h].onRead(nil)
			hooks[h].gone.Store(0)
		}()
		grep := getOK(t, c, capText, data)
		require.Empty(t, grep.Corrupt)
		require.Equal(t, int64(1), hooks[h].gone.Load())
		used := usedServers(grep)
		require.True(t, used[g.servers[h].host.ID().String()], "share 0 gave the segments before it went")
		require.Len(t, grep.Shares, 4, "share 0 and its replacement")
	})

	t.Run("too many corrupt", func(t *testing.T) {
		// Eight of ten shares corrupt in the same segment: what came
		// before it was written, then the download fails.
		off, _ := capab.BlockRange(12)
		for n := range 8 {
			hooks[holder(t, g, rep, n)].onRead(flipAt(uint32(n), uint64(off)+5))
		}
		defer func() {
			for _, hb := range hooks {
				hb.onRead(nil)
			}
		}()
		var out bytes.Buffer
		_, err := c.Get(ctx, capText, &out)
		require.ErrorIs(t, err, files.ErrDecrypt)
		require.Equal(t, data[:12*files.SegmentSize], out.Bytes(), "the segments before the failure, and nothing else")
	})

	// Every payment settled.
	b, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Zero(t, b.Reserved)
}

// TestClientStreamPut uploads with servers that fail part-way through,
// with the file's size known (shares written as it is read) and not (the
// file read into the spool first), with fewer servers written at once
// than hold shares, and with a size that is wrong.
func TestClientStreamPut(t *testing.T) {
	smallWindows(t)
	ctx := cgCtx(t)
	g, hooks := newDiskGrid(t, 12)
	dir := t.TempDir()
	c := g.client(dir, func(cfg *ClientConfig) { cfg.Happy = 7 })
	_, err := c.Fund(ctx, g.voucher(2_000_000), 0)
	require.NoError(t, err)
	data := cgRandom(t, 9*files.SegmentSize+77)
	spool := filepath.Join(dir, ClientSpoolDir)

	sources := map[string]func() io.Reader{
		"known size":   func() io.Reader { return bytes.NewReader(data) },
		"unknown size": func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			// A client of its own: the server that fails a write below is
			// penalised by it.
			dir := t.TempDir()
			c := g.client(dir, func(cfg *ClientConfig) { cfg.Happy = 7 })
			_, err := c.Fund(ctx, g.voucher(2_000_000), 0)
			require.NoError(t, err)
			spool := filepath.Join(dir, ClientSpoolDir)

			// A stale spool file, as a crash leaves one, goes at the next
			// upload; the upload's own leaves nothing behind.
			require.NoError(t, os.MkdirAll(spool, 0o700))
			stale := filepath.Join(spool, spoolPrefix+"stale.spool")
			require.NoError(t, os.WriteFile(stale, []byte("old ciphertext"), 0o600))

			var progress []PutProgress
			capText, rep, err := c.Put(ctx, src(), WithPutProgress(func(p PutProgress) { progress = append(progress, p) }))
			require.NoError(t, err)
			require.Len(t, rep.Shares, 10)
			require.Equal(t, 10, rep.Servers)
			require.NoFileExists(t, stale)
			left, err := os.ReadDir(spool)
			require.NoError(t, err)
			require.Empty(t, left, "no spool file left")
			last := progress[len(progress)-1]
			require.Equal(t, PutProgress{SharesPlaced: 10, SharesTotal: 10, BytesWritten: 10 * rep.ShareSize, BytesTotal: 10 * rep.ShareSize}, last)
			ring := cgRing(t, g, rep)
			for _, sh := range rep.Shares {
				require.Equal(t, ring[sh.Share].String(), sh.Server, "the first N of the ring")
			}
			getOK(t, c, capText, data)

			// The holder of share 4 fails its third write of share 4 in
			// the next upload: the share goes to the next server of the
			// ring, written from the spool. (The ring is known only once
			// Put starts: every server fails the third write of share 4
			// of all, which only the first holder makes.)
			var mu sync.Mutex
			writes := 0
			for _, hb := range hooks {
				hb.onWrite(func(share uint32, off uint64, size int) error {
					if share != 4 {
						return nil
					}
					mu.Lock()
					defer mu.Unlock()
					writes++
					if writes == 3 {
						return errors.New("disk on fire")
					}
					return nil
				})
			}
			capText, rep, err = c.Put(ctx, src())
			for _, hb := range hooks {
				hb.onWrite(nil)
			}
			require.NoError(t, err)
			require.Len(t, rep.Shares, 10)
			ring = cgRing(t, g, rep)
			var writeErr *CallReport
			for i, call := range rep.Calls {
				if call.Op == "write" && call.Error != "" {
					writeErr = &rep.Calls[i]
				}
			}
			require.NotNil(t, writeErr, "a write failed")
			require.Equal(t, ring[4].String(), writeErr.Server)
			require.Equal(t, []int{4}, writeErr.Shares)
			require.True(t, c.scores.Penalised(ring[4]), "paid to store share 4, it did not: coins taken without service")
			for _, sh := range rep.Shares {
				if sh.Share == 4 {
					require.Equal(t, ring[10].String(), sh.Server, "share 4 moved to the next server of the ring")
				} else {
					require.Equal(t, ring[sh.Share].String(), sh.Server)
				}
			}
			getOK(t, c, capText, data)
			left, err = os.ReadDir(spool)
			require.NoError(t, err)
			require.Empty(t, left)
		})
	}

	t.Run("three servers at a time", func(t *testing.T) {
		few := g.client("", func(cfg *ClientConfig) { cfg.Happy = 7; cfg.UploadParallelism = 3 })
		_, err := few.Fund(ctx, g.voucher(500_000), 0)
		require.NoError(t, err)
		for name, src := range sources {
			capText, rep, err := few.Put(ctx, src())
			require.NoError(t, err, name)
			require.Len(t, rep.Shares, 10, name)
			ring := cgRing(t, g, rep)
			for _, sh := range rep.Shares {
				require.Equal(t, ring[sh.Share].String(), sh.Server, name)
			}
			getOK(t, few, capText, data)
		}
	})

	t.Run("wrong size", func(t *testing.T) {
		for _, size := range []int64{int64(len(data)) - 1, int64(len(data)) + 1, 0} {
			_, _, err := c.Put(ctx, iotest.HalfReader(bytes.NewReader(data)), WithPutSize(size))
			require.ErrorIs(t, err, errAPIBadRequest, "size %d", size)
			require.Contains(t, err.Error(), "not the size it was said to be")
		}
		_, _, err := c.Put(ctx, bytes.NewReader(data), WithPutSize(files.MaxFileSize+1))
		require.ErrorIs(t, err, files.ErrTooLarge)
	})

	t.Run("read error", func(t *testing.T) {
		boom := errors.New("boom")
		for _, size := range []int64{-1, int64(len(data))} {
			r := io.MultiReader(bytes.NewReader(data[:3*files.SegmentSize]), iotest.ErrReader(boom))
			_, _, err := c.Put(ctx, r, WithPutSize(size))
			require.ErrorIs(t, err, boom)
		}
		left, err := os.ReadDir(spool)
		require.NoError(t, err)
		require.Empty(t, left)
	})
}

// TestClientAPIStreamPut uploads through the HTTP API with the size in
// the URL (a chunked body) and without it, with progress events.
func TestClientAPIStreamPut(t *testing.T) {
	smallWindows(t)
	ctx := cgCtx(t)
	g := newCGGrid(t, 8, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, nil)
	_, err := c.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	a := newCGAPI(t, dir)
	data := cgRandom(t, 5*files.SegmentSize+3)

	for _, path := range []string{"/put?progress=1", fmt.Sprintf("/put?progress=1&size=%d", len(data)), fmt.Sprintf("/put?size=%d", len(data))} {
		// A reader the HTTP client cannot size: the body goes chunked.
		resp := a.do("POST", path, io.NopCloser(iotest.HalfReader(bytes.NewReader(data))))
		require.Equal(t, 200, resp.StatusCode, path)
		var res *PutResult
		if path == fmt.Sprintf("/put?size=%d", len(data)) {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
		} else {
			sc := bufio.NewScanner(resp.Body)
			events := 0
			for sc.Scan() {
				var ev PutEvent
				require.NoError(t, json.Unmarshal(sc.Bytes(), &ev))
				if ev.Progress != nil {
					events++
				}
				require.Nil(t, ev.Error, path)
				if ev.Result != nil {
					res = ev.Result
				}
			}
			require.Positive(t, events, path)
		}
		require.NotNil(t, res, path)
		require.Len(t, res.Report.Shares, 10, path)
		getOK(t, c, res.Capability, data)
	}

	var e APIError
	a.json("POST", "/put?size=x", nil, 400, &e)
	require.Equal(t, "bad_request", e.Kind)
	a.json("POST", "/put?size=5", nil, 400, &e)
	require.Equal(t, "bad_request", e.Kind)
	require.Contains(t, e.Error, "differ")
	resp := a.do("POST", fmt.Sprintf("/put?size=%d", len(data)+7), io.NopCloser(iotest.HalfReader(bytes.NewReader(data))))
	require.Equal(t, 400, resp.StatusCode)

	// A download that fails part-way breaks the answer off short of its
	// Content-Length, after the segments before the failure.
	pr, _, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	for _, s := range g.servers {
		s.backend.corrupt.Store(true)
	}
	resp = a.do("POST", "/get", strings.NewReader(`{"capability":"`+pr+`"}`))
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, int64(len(data)), resp.ContentLength)
	got, err := io.ReadAll(resp.Body)
	require.Error(t, err, "the answer is broken off")
	require.Less(t, len(got), len(data))
	require.Equal(t, data[:len(got)], got, "what came is the start of the file")
}
