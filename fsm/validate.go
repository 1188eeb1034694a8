package fsm

import (
	"errors"
	"fmt"
)

// Limits on the fields of a Command. They keep one log entry, one snapshot
// record and one MUPDATE line bounded, and they are what Restore and
// DecodeCommands check untrusted input against.
const (
	// MaxNameLen is the longest mailbox name (and OpSetPeer node ID) in bytes.
	MaxNameLen = 1024
	// MaxLocationLen is the longest location (and OpSetPeer address) in bytes.
	MaxLocationLen = 1024
	// MaxACLLen is the longest ACL string in bytes.
	MaxACLLen = 64 << 10
	// MaxIdentityLen is the longest authenticated identity in bytes.
	MaxIdentityLen = 1024
)

// ErrInvalidCommand is wrapped by every error Validate returns.
var ErrInvalidCommand = errors.New("fsm: invalid command")

// Validate checks a command before it is proposed: non-empty name of at most
// MaxNameLen bytes without NUL, CR, LF, 0x1D or 0x1F; location/ACL limits.
//
// NUL, CR and LF would break the MUPDATE wire form and log lines; 0x1D and
// 0x1F are the bytes DBNameKey maps '!' and '.' to, so a name holding them
// could not be recovered from its key. Apply runs the same check and answers
// CodeInvalid, so a command that slipped past the proposer changes nothing.
func Validate(c Command) error {
	switch c.Op {
	case OpReserve, OpActivate, OpDeactivate, OpDelete, OpSetPeer:
	default:
		return fmt.Errorf("%w: unknown op %d", ErrInvalidCommand, uint8(c.Op))
	}
	if err := checkName(c.Name); err != nil {
		return fmt.Errorf("%w: name: %w", ErrInvalidCommand, err)
	}
	if err := checkText(c.Location, MaxLocationLen); err != nil {
		return fmt.Errorf("%w: location: %w", ErrInvalidCommand, err)
	}
	if err := checkText(c.ACL, MaxACLLen); err != nil {
		return fmt.Errorf("%w: acl: %w", ErrInvalidCommand, err)
	}
	if err := checkText(c.Identity, MaxIdentityLen); err != nil {
		return fmt.Errorf("%w: identity: %w", ErrInvalidCommand, err)
	}
	if err := checkText(c.Bound, MaxLocationLen); err != nil {
		return fmt.Errorf("%w: bound server: %w", ErrInvalidCommand, err)
	}
	return nil
}

var (
	errEmpty   = errors.New("empty")
	errTooLong = errors.New("too long")
)

// checkName applies the mailbox name rules.
func checkName(name string) error {
	if name == "" {
		return errEmpty
	}
	if len(name) > MaxNameLen {
		return errTooLong
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case 0, '\r', '\n', 0x1D, 0x1F:
			return fmt.Errorf("forbidden byte 0x%02x at %d", name[i], i)
		}
	}
	return nil
}

// checkText applies the rules for locations, ACLs and identities.
func checkText(s string, max int) error {
	if len(s) > max {
		return errTooLong
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0, '\r', '\n':
			return fmt.Errorf("forbidden byte 0x%02x at %d", s[i], i)
		}
	}
	return nil
}
