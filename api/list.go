package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/pbconv"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// List returns one page of entries in dbname order. Every page of one
// listing is read from the same point-in-time view, kept in a small cache
// on the node that served the first page; the page token names its
// revision and the last name returned.
func (d *directoryServer) List(ctx context.Context, req *rookeryv1.ListRequest) (*rookeryv1.ListResponse, error) {
	f, err := listFilterOf(req.GetNamePrefix(), req.GetLocationPrefix())
	if err != nil {
		return nil, err
	}
	return d.listPage(ctx, f, req.GetPageSize(), req.GetPageToken(), req.GetStartAfter(), req.GetConsistency())
}

// listPage serves one page of a filtered listing (List, ListReservations).
func (d *directoryServer) listPage(ctx context.Context, f listFilter, pageSize uint32, token, startAfter string, c rookeryv1.Consistency) (*rookeryv1.ListResponse, error) {
	size := int(pageSize)
	if size == 0 {
		size = d.s.cfg.DefaultPageSize
	}
	if size > d.s.cfg.MaxPageSize {
		size = d.s.cfg.MaxPageSize
	}
	var (
		v     *fsm.View
		after string
		err   error
	)
	if token != "" {
		pt, err := decodePageToken(token)
		if err != nil {
			return nil, invalid("page_token", "%v", err)
		}
		if pt.filter != f.hash() {
			return nil, invalid("page_token", "was issued for a different listing (filter)")
		}
		if v, err = d.pinnedView(pt.revision); err != nil {
			return nil, err
		}
		after = pt.after
	} else {
		if v, err = d.readView(ctx, c); err != nil {
			return nil, err
		}
		after = startAfter
	}
	page := make([]*rookeryv1.Mailbox, 0, min(size, 1024))
	more := false
	f.scan(v, after, func(e fsm.Entry) bool {
		if len(page) == size {
			more = true
			return false
		}
		page = append(page, pbconv.MailboxToProto(e))
		return true
	})
	resp := &rookeryv1.ListResponse{Mailboxes: page, Revision: v.Revision()}
	if more {
		d.s.views.put(v)
		resp.NextPageToken = encodePageToken(pageToken{
			revision: v.Revision(),
			filter:   f.hash(),
			after:    page[len(page)-1].GetName(),
		})
	}
	return resp, nil
}

// pinnedView finds the view a page token refers to. A node that restarted,
// a different node, or a listing paused longer than ListViewTTL no longer
// has it: the caller must start over, and is told so.
func (d *directoryServer) pinnedView(rev uint64) (*fsm.View, error) {
	if v := d.s.views.get(rev); v != nil {
		return v, nil
	}
	if v := d.s.dir.Current(); v.Revision() == rev {
		return v, nil
	}
	return nil, status.Errorf(codes.FailedPrecondition,
		"page_token: revision %d of this listing is no longer available on this node (a listing's view is kept %s after its last page, on the node that served the first page); restart the listing without page_token",
		rev, d.s.cfg.ListViewTTL)
}

// listFilter is the optional name or location prefix of a List or Watch,
// or the reservation filter of ListReservations.
type listFilter struct {
	kind   byte // 0 none, 1 name prefix, 2 location prefix, 3 reservations
	prefix string
	before int64 // kind 3: reserved before this time (0: any)
}

func listFilterOf(namePrefix, locationPrefix string) (listFilter, error) {
	switch {
	case namePrefix != "" && locationPrefix != "":
		return listFilter{}, invalid("name_prefix, location_prefix", "at most one may be set")
	case namePrefix != "":
		return listFilter{kind: 1, prefix: namePrefix}, nil
	case locationPrefix != "":
		return listFilter{kind: 2, prefix: locationPrefix}, nil
	}
	return listFilter{}, nil
}

func (f listFilter) hash() uint64 {
	h := fnv.New64a()
	h.Write([]byte{f.kind})
	h.Write([]byte(f.prefix))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(f.before)))
	return h.Sum64()
}

// scan visits matching entries after the name after (exclusive), in
// dbname order.
func (f listFilter) scan(v *fsm.View, after string, fn func(fsm.Entry) bool) {
	switch f.kind {
	case 2:
		// The server index makes every page cost O(page), not a scan.
		v.ScanLocationFrom(f.prefix, after, fn)
	case 3:
		v.ScanReservedFrom(after, func(e fsm.Entry) bool {
			if f.before != 0 && e.ReservedAt >= f.before {
				return true
			}
			return fn(e)
		})
	default:
		if after == "" {
			v.ScanName(f.prefix, fn)
			return
		}
		v.ScanNameFrom(f.prefix, after, fn)
	}
}

// pageToken is the opaque List cursor: revision of the listing, hash of its
// filter, and the last name returned.
type pageToken struct {
	revision uint64
	filter   uint64
	after    string
}

const pageTokenVersion = 1

func encodePageToken(t pageToken) string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+8+len(t.after))
	b = append(b, pageTokenVersion)
	b = binary.AppendUvarint(b, t.revision)
	b = binary.BigEndian.AppendUint64(b, t.filter)
	b = append(b, t.after...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (pageToken, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1 || b[0] != pageTokenVersion {
		return pageToken{}, errors.New("malformed (not from a ListResponse of this API version)")
	}
	rev, n := binary.Uvarint(b[1:])
	if n <= 0 || len(b) < 1+n+8 {
		return pageToken{}, errors.New("malformed (truncated)")
	}
	rest := b[1+n:]
	t := pageToken{revision: rev, filter: binary.BigEndian.Uint64(rest), after: string(rest[8:])}
	if t.after == "" {
		return pageToken{}, errors.New("malformed (no position)")
	}
	return t, nil
}

// viewCache keeps the views of listings in progress. Views are immutable
// and cheap to hold, but each pins the tree nodes of its revision, so the
// cache is bounded in count and age.
type viewCache struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	views map[uint64]*cachedView
}

type cachedView struct {
	v       *fsm.View
	lastUse time.Time
}

func newViewCache(max int, ttl time.Duration) *viewCache {
	return &viewCache{max: max, ttl: ttl, views: map[uint64]*cachedView{}}
}

func (c *viewCache) get(rev uint64) *fsm.View {
	c.mu.Lock()
	defer c.mu.Unlock()
	cv, ok := c.views[rev]
	if !ok {
		return nil
	}
	now := time.Now()
	if now.Sub(cv.lastUse) > c.ttl {
		delete(c.views, rev)
		return nil
	}
	cv.lastUse = now
	return cv.v
}

func (c *viewCache) put(v *fsm.View) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if cv, ok := c.views[v.Revision()]; ok {
		cv.lastUse = now
		return
	}
	var oldest uint64
	var oldestUse time.Time
	for rev, cv := range c.views {
		if now.Sub(cv.lastUse) > c.ttl {
			delete(c.views, rev)
			continue
		}
		if oldestUse.IsZero() || cv.lastUse.Before(oldestUse) {
			oldest, oldestUse = rev, cv.lastUse
		}
	}
	if len(c.views) >= c.max && !oldestUse.IsZero() {
		delete(c.views, oldest)
	}
	c.views[v.Revision()] = &cachedView{v: v, lastUse: now}
}
