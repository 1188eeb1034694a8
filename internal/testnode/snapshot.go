package testnode

import (
	"fmt"
	"io"

	"github.com/rookery/rookery/fsm"
)

// WriteRealisticSnapshot writes the snapshot of a directory of n active
// mailboxes shaped like a real murder's (five folders per user, users
// spread over eight backends, one ACL entry each), for restart benchmarks
// that seed nodes with `rookeryd snapshot-restore`. Mailbox
// "user.u0000007" is always among them when n > 35.
func WriteRealisticSnapshot(w io.Writer, n int) error {
	s := fsm.New(fsm.DefaultConfig())
	folders := []string{"", ".Sent", ".Trash", ".Drafts", ".Sent.Archive"}
	batch := make([]fsm.Command, 0, 4096)
	idx := uint64(0)
	flush := func() {
		idx++
		s.Apply(idx, batch)
		batch = batch[:0]
	}
	for i := range n {
		u := i / len(folders)
		batch = append(batch, fsm.Command{Op: fsm.OpActivate, Name: fmt.Sprintf("user.u%07d%s", u, folders[i%len(folders)]),
			Location: fmt.Sprintf("imap-backend-%02d!default", u%8), ACL: fmt.Sprintf("u%07d\tlrswipkxtecdan\t", u)})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	_, err := s.Snapshot().WriteTo(w)
	return err
}
