package fsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestEncodeCommandsRoundTrips(t *testing.T) {
	tests := [][]Command{
		nil,
		{{Op: OpReserve, Name: "user.a", Location: locA, Identity: "be1", Bound: "be1", Time: 1_700_000_000_000_000_000}},
		{{Op: OpDelete, Name: "user.b", Identity: "admin", IfRevision: 1 << 40}},
		{
			{Op: OpActivate, Name: "example.com!user.bob.Sent", Location: "be2!", ACL: aclA, Time: -1},
			{Op: OpDelete, Name: "DELETED.user.x.65E33B49"},
			{Op: OpSetPeer, Name: "n1", Location: "127.0.0.1:7001"},
			{Op: 200, Name: "", Location: strings.Repeat("x", 300)},
		},
	}
	for _, cmds := range tests {
		got, err := DecodeCommands(EncodeCommands(cmds))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(cmds) || (len(cmds) > 0 && !reflect.DeepEqual(got, cmds)) {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, cmds)
		}
	}
}

func TestDecodeCommandsRejectsGarbage(t *testing.T) {
	valid := EncodeCommands([]Command{{Op: OpReserve, Name: "user.a", Location: locA}})
	tests := map[string][]byte{
		"empty":           {},
		"wrong version":   append([]byte{3}, valid[1:]...),
		"no checksum":     {2, 0, 0},
		"truncated":       valid[:len(valid)-1],
		"trailing byte":   append(append([]byte(nil), valid...), 0),
		"count too large": {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"string too long": {1, 1, 1, 0xff, 0x01, 'a'},
		"varint overflow": {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			cmds, err := DecodeCommands(b)
			if !errors.Is(err, ErrCorrupt) || cmds != nil {
				t.Fatalf("DecodeCommands = %v, %v; want ErrCorrupt", cmds, err)
			}
		})
	}
}

func TestEncodeResultsRoundTripsAndRejectsGarbage(t *testing.T) {
	rs := []Result{{CodeOK, 1}, {CodeExists, 0}, {CodeOK, 1 << 62}, {CodeInvalid, 0}}
	b := EncodeResults(rs)
	got, err := DecodeResults(b)
	if err != nil || !reflect.DeepEqual(got, rs) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {9, 0}, b[:len(b)-1], append(append([]byte(nil), b...), 7)} {
		if _, err := DecodeResults(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeResults(%x) err %v, want ErrCorrupt", bad, err)
		}
	}
}

// TestDecodeCommandsDetectsEveryFlippedByte: a damaged log entry must never
// decode as some other command (docs/integrity.md).
func TestDecodeCommandsDetectsEveryFlippedByte(t *testing.T) {
	valid := EncodeCommands([]Command{{Op: OpActivate, Name: "user.alice", Location: locA, ACL: aclA, Identity: "be1", Bound: "be1", Time: 42}})
	for i := range valid {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := append([]byte(nil), valid...)
			b[i] ^= mask
			if cmds, err := DecodeCommands(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: DecodeCommands = %+v, %v; want ErrCorrupt", i, mask, cmds, err)
			}
		}
	}
}

// TestDecodeCommandsReadsVersion1 keeps logs written before checksums
// replayable.
func TestDecodeCommandsReadsVersion1(t *testing.T) {
	// version 1, one command: RESERVE "user.a" "be1!default" "" "be1" time 5
	v1 := []byte{1, 1, byte(OpReserve), 6, 'u', 's', 'e', 'r', '.', 'a', 11, 'b', 'e', '1', '!', 'd', 'e', 'f', 'a', 'u', 'l', 't', 0, 3, 'b', 'e', '1', 10}
	got, err := DecodeCommands(v1)
	want := []Command{{Op: OpReserve, Name: "user.a", Location: "be1!default", Identity: "be1", Time: 5}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeCommands(v1) = %+v, %v; want %+v", got, err, want)
	}
}
