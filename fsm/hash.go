package fsm

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"

	"github.com/google/btree"
)

// Hash is an order-independent 128-bit digest of the directory's entries:
// the sum, modulo 2^128, of a per-entry digest over a length-prefixed
// encoding of the name, state, location, ACL, reservation and revisions
// (see digest). Two stores hold equal entries exactly when their hashes
// are equal, up to the collision odds of a 128-bit hash.
//
// A sum rather than a running hash because it can be kept up to date in
// O(1) per change (subtract the old entry, add the new one) and
// recomputed from any point-in-time copy in any order, which is what the
// cross-node consistency check needs: every node can name its hash at any
// recent revision without pausing writes. The peer map (OpSetPeer) is not
// part of it: it changes without a revision, so it has no place in a
// per-revision digest, and it is cluster plumbing rather than directory.
type Hash struct{ Hi, Lo uint64 }

// String is the hash as 32 hex digits.
func (h Hash) String() string { return hex.EncodeToString(h.Bytes()) }

// Bytes is the hash as 16 big-endian bytes.
func (h Hash) Bytes() []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, h.Hi)
	binary.BigEndian.PutUint64(b[8:], h.Lo)
	return b
}

// HashFromBytes parses what Bytes returns.
func HashFromBytes(b []byte) (Hash, error) {
	if len(b) != 16 {
		return Hash{}, fmt.Errorf("fsm: hash of %d bytes, want 16", len(b))
	}
	return Hash{Hi: binary.BigEndian.Uint64(b), Lo: binary.BigEndian.Uint64(b[8:])}, nil
}

func (h Hash) add(o Hash) Hash {
	lo, carry := bits.Add64(h.Lo, o.Lo, 0)
	hi, _ := bits.Add64(h.Hi, o.Hi, carry)
	return Hash{Hi: hi, Lo: lo}
}

func (h Hash) sub(o Hash) Hash {
	lo, borrow := bits.Sub64(h.Lo, o.Lo, 0)
	hi, _ := bits.Sub64(h.Hi, o.Hi, borrow)
	return Hash{Hi: hi, Lo: lo}
}

// recordHash is one entry's digest. Every field is length-prefixed or fixed
// size, so distinct entries never encode alike.
func recordHash(r *record) Hash {
	var stack [256]byte
	b := binary.AppendUvarint(stack[:0], uint64(len(r.key)))
	b = append(b, r.key...)
	b = append(b, byte(r.meta.state))
	for _, s := range [...]string{r.meta.loc, r.meta.acl, r.meta.by} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, r.reservedAt)
	b = binary.AppendUvarint(b, r.createRevision)
	b = binary.AppendUvarint(b, r.modRevision)
	return digest(b)
}

// Seeds and multipliers of digest: fixed, so every node computes the same
// digest, and odd with well-mixed bits (taken from the fractional digits
// of pi and e).
const (
	digestSeedHi = 0x243f6a8885a308d3
	digestSeedLo = 0x13198a2e03707344
	digestMulHi  = 0xb7e151628aed2a6b
	digestMulLo  = 0x9e3779b97f4a7c15
)

// mix folds a 128-bit product to 64 bits.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// digest is a fast 128-bit hash of b for detecting accidental change (bit
// flips, lost or stray updates), not an adversary: two independent
// 64-bit lanes, each folding 8 bytes per step through a 64x64->128-bit
// multiply. SHA-256 costs about five times as much per entry, and this
// runs twice on every applied change.
func digest(b []byte) Hash {
	hi := digestSeedHi ^ uint64(len(b))
	lo := digestSeedLo ^ uint64(len(b))*digestMulLo
	for len(b) >= 8 {
		w := binary.LittleEndian.Uint64(b)
		hi = mix(hi^w, digestMulHi)
		lo = mix(lo^w^digestSeedLo, digestMulLo)
		b = b[8:]
	}
	var tail [8]byte
	copy(tail[:], b)
	w := binary.LittleEndian.Uint64(tail[:]) ^ uint64(len(b))<<56
	hi = mix(hi^w, digestMulHi)
	lo = mix(lo^w^digestSeedLo, digestMulLo)
	// Finalise each lane with the other, so both depend on every byte twice.
	return Hash{Hi: mix(hi^digestSeedLo, lo|1), Lo: mix(lo^digestSeedHi, hi|1)}
}

// treeHash recomputes the hash of every entry of a tree, O(n).
func treeHash(t *btree.BTreeG[*record]) Hash {
	var h Hash
	t.Ascend(func(r *record) bool {
		h = h.add(recordHash(r))
		return true
	})
	return h
}

// HashWindow is how many recent revisions a store can name its hash at.
// 16 bytes each: 1 MiB. A follower lags the leader by far fewer revisions
// than this, so a check at the leader's revision always finds it.
const HashWindow = 1 << 16

// stateHash is the incremental hash of a state and its value at the last
// HashWindow revisions.
type stateHash struct {
	cur  Hash
	rev  uint64 // revision cur belongs to (the state's revision)
	ring []Hash // ring[r%HashWindow] is the hash at revision r; allocated on first change
	n    uint64 // revisions rev-n+1 .. rev are in ring (rev itself always is, as cur)
}

// reset starts the record afresh at revision rev with hash h (a new or
// restored state): earlier revisions are unknown.
func (sh *stateHash) reset(rev uint64, h Hash) {
	sh.cur, sh.rev, sh.n = h, rev, 0
}

// change records the change of one entry at revision rev: removed is the
// entry's record before it (nil if absent), added the record after it
// (nil for a delete).
func (sh *stateHash) change(rev uint64, removed, added *record) {
	if removed != nil {
		sh.cur = sh.cur.sub(recordHash(removed))
	}
	if added != nil {
		sh.cur = sh.cur.add(recordHash(added))
	}
	if sh.ring == nil {
		sh.ring = make([]Hash, HashWindow)
	}
	sh.rev = rev
	sh.ring[rev%HashWindow] = sh.cur
	sh.n = min(sh.n+1, HashWindow)
}

// ErrHashUnavailable is wrapped by HashAt's error when the store cannot
// name its hash at the revision asked for.
var ErrHashUnavailable = errors.New("fsm: hash unavailable at revision")

// HashUnavailableError says which revisions the store can name a hash at:
// Oldest..Current. A revision beyond Current has not been applied yet.
type HashUnavailableError struct {
	Requested, Oldest, Current uint64
}

func (e *HashUnavailableError) Error() string {
	if e.Requested > e.Current {
		return fmt.Sprintf("fsm: hash at revision %d unavailable: not applied yet (at %d)", e.Requested, e.Current)
	}
	return fmt.Sprintf("fsm: hash at revision %d unavailable: kept from %d to %d", e.Requested, e.Oldest, e.Current)
}

func (e *HashUnavailableError) Unwrap() error { return ErrHashUnavailable }

func (sh *stateHash) at(rev uint64) (Hash, error) {
	switch {
	case rev == sh.rev:
		return sh.cur, nil
	case rev < sh.rev && sh.rev-rev < sh.n:
		return sh.ring[rev%HashWindow], nil
	}
	oldest := sh.rev
	if sh.n > 0 {
		oldest = sh.rev - sh.n + 1
	}
	return Hash{}, &HashUnavailableError{Requested: rev, Oldest: oldest, Current: sh.rev}
}

// Hash returns the current revision and the hash of the entries at it.
func (s *Store) Hash() (uint64, Hash) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.sum.rev, s.st.sum.cur
}

// HashAt returns the hash of the entries as they were at revision rev, in
// O(1). It answers for the last HashWindow revisions applied since the
// store was created or last restored; any other revision returns a
// *HashUnavailableError (ErrHashUnavailable).
func (s *Store) HashAt(rev uint64) (Hash, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.sum.at(rev)
}

// ErrHashMismatch is wrapped by VerifyHash's error: the entries in memory
// no longer add up to the hash maintained as they were applied.
var ErrHashMismatch = errors.New("fsm: entries do not match their running hash")

// HashMismatchError carries both sides of a failed VerifyHash.
type HashMismatchError struct {
	Revision   uint64
	Maintained Hash // kept up to date on every change
	Computed   Hash // recomputed from the entries
}

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("fsm: at revision %d the entries hash to %s but the running hash is %s", e.Revision, e.Computed, e.Maintained)
}

func (e *HashMismatchError) Unwrap() error { return ErrHashMismatch }

// VerifyHash recomputes the hash from a point-in-time copy of every entry
// (O(n), without holding up Apply) and compares it with the hash maintained
// change by change. A difference means the entries in memory were damaged,
// or changed outside Apply: it returns a *HashMismatchError. It returns the
// revision checked and its hash.
func (s *Store) VerifyHash() (uint64, Hash, error) {
	s.mu.Lock()
	tree, rev, want := s.st.tree.Clone(), s.st.sum.rev, s.st.sum.cur
	s.mu.Unlock()
	got := treeHash(tree)
	if got != want {
		return rev, want, &HashMismatchError{Revision: rev, Maintained: want, Computed: got}
	}
	return rev, got, nil
}
