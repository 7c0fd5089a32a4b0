package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunAnswersEachLine(t *testing.T) {
	c := config{fixed: rates{PerCall: 10, StorePerGiBMonth: 50_000, ReadPerGiB: 1_000, WritePerGiB: 1_000}, surcharge: 3}
	in := strings.Join([]string{
		`{"version":1,"id":1,"now":1767225600,"capacity":1000,"used":0,"period_seconds":3600,"sold":[],"current":{},"default":{}}`,
		`{"version":1,"id":2,"capacity":1000,"used":500,"extra":"ignored"}`,
		`{"version":1,"id":3,"capacity":1000,"used":900}`,
		`{"version":1,"id":4,"capacity":0,"used":0}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	require.NoError(t, run(strings.NewReader(in), &out, c))

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 4)
	want := []struct {
		store, write uint64
		message      bool
	}{
		{50_000, 1_000, false}, // empty: fixed rates
		{87_500, 1_750, false}, // half full: × 1.75
		{171_500, 3_430, true}, // 90 %: × 3.43, and a message
		{200_000, 4_000, true}, // no space: × 4
	}
	for i, line := range lines {
		var a answer
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&a), line)
		require.Equal(t, uint64(i+1), a.ID)
		require.Equal(t, uint64(10), a.Rates.PerCall)
		require.Equal(t, uint64(1_000), a.Rates.ReadPerGiB)
		require.Equal(t, want[i].store, a.Rates.StorePerGiBMonth, line)
		require.Equal(t, want[i].write, a.Rates.WritePerGiB, line)
		require.Equal(t, want[i].message, a.Message != "", line)
	}
}

func TestRunStopsAtGarbage(t *testing.T) {
	var out bytes.Buffer
	err := run(strings.NewReader("{\"version\":1,\"id\":1}\nnot json\n"), &out, config{})
	require.Error(t, err)
	require.Equal(t, 1, strings.Count(out.String(), "\n"), "answered the good line first")

	require.Error(t, run(strings.NewReader(`{"version":2,"id":1}`+"\n"), &out, config{}))
}
