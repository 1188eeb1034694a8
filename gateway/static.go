package gateway

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/rookery/rookery/fsm"
)

// ParseStaticDirectory reads a fixed directory for MANUAL TESTING ONLY:
// one entry per line, "internal-name location [RESERVED|ACTIVE]", e.g.
//
//	user.alice            be1!default
//	example.com!user.bob  be2!default
//	user.carol            be1!default  RESERVED
//
// Blank lines and lines starting with '#' are ignored. A replica loaded
// from it never changes; production gateways follow the directory.
func ParseStaticDirectory(r io.Reader) ([]fsm.Entry, error) {
	var out []fsm.Entry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("static directory line %d: want name location [RESERVED|ACTIVE]", n)
		}
		e := fsm.Entry{Name: f[0], Location: f[1], State: fsm.StateActive}
		if len(f) == 3 {
			switch strings.ToUpper(f[2]) {
			case "RESERVED":
				e.State = fsm.StateReserved
			case "ACTIVE":
			default:
				return nil, fmt.Errorf("static directory line %d: state %q: want RESERVED or ACTIVE", n, f[2])
			}
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("static directory: %w", err)
	}
	return out, nil
}
