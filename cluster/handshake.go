package cluster

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// The raft link handshake. Without raft TLS, every raft connection starts
// with a mutual challenge-response keyed by the cluster secret; raft's
// transport sees the connection only once both sides proved they hold it,
// and from then on every byte travels in AEAD frames under keys derived
// from the secret and both nonces (sealedConn). docs/raft-link.md explains
// the protocol and its choices.
//
//	client → server  hello:  magic(8) ‖ client nonce(32)
//	server → client  hello:  magic(8) ‖ server nonce(32) ‖ server proof(32)
//	client → server  proof:  client proof(32)
//
//	proof(role) = HMAC-SHA256(authKey, label(role) ‖ client nonce ‖ server nonce)
//	authKey     = HKDF-SHA256(secret, info "rookery raft v1 auth")
//
// The server proves itself first, so a client never sends its proof to an
// impostor; the roles' labels differ, so neither side's proof can be
// reflected back as the other's; fresh nonces on both sides make every
// proof good for one connection only. Messages have fixed sizes: there are
// no lengths to trust.
const (
	handshakeNonceLen = 32
	handshakeProofLen = sha256.Size
	clientHelloLen    = len(handshakeMagic) + handshakeNonceLen
	serverHelloLen    = len(handshakeMagic) + handshakeNonceLen + handshakeProofLen
	sessionKeyLen     = 32 // AES-256
)

// handshakeMagic names the protocol and its version (the last byte).
const handshakeMagic = "RKRAFT\x00\x01"

const (
	labelAuthKey     = "rookery raft v1 auth"
	labelServerProof = "rookery raft v1 server proof"
	labelClientProof = "rookery raft v1 client proof"
	labelClientKey   = "rookery raft v1 client to server"
	labelServerKey   = "rookery raft v1 server to client"
)

// errHandshake marks every way a handshake can fail; the wrapped message
// says which step, never anything derived from the secret.
var errHandshake = errors.New("raft handshake failed")

// linkKeys are one connection's AEAD keys, one per direction.
type linkKeys struct {
	send, recv []byte
}

// deriveAuthKey turns the cluster secret into the proof key.
func deriveAuthKey(secret []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, nil, labelAuthKey, sha256.Size)
}

func proof(authKey []byte, label string, cnonce, snonce []byte) []byte {
	m := hmac.New(sha256.New, authKey)
	m.Write([]byte(label))
	m.Write(cnonce)
	m.Write(snonce)
	return m.Sum(nil)
}

// sessionKeys derives the connection's keys from the secret and both
// nonces; isClient picks which direction is "send".
func sessionKeys(secret, cnonce, snonce []byte, isClient bool) (linkKeys, error) {
	salt := append(append([]byte(nil), cnonce...), snonce...)
	c2s, err := hkdf.Key(sha256.New, secret, salt, labelClientKey, sessionKeyLen)
	if err != nil {
		return linkKeys{}, err
	}
	s2c, err := hkdf.Key(sha256.New, secret, salt, labelServerKey, sessionKeyLen)
	if err != nil {
		return linkKeys{}, err
	}
	if isClient {
		return linkKeys{send: c2s, recv: s2c}, nil
	}
	return linkKeys{send: s2c, recv: c2s}, nil
}

// parseClientHello checks the magic and returns the client nonce.
func parseClientHello(b []byte) (cnonce []byte, err error) {
	if len(b) != clientHelloLen {
		return nil, fmt.Errorf("%w: client hello is %d bytes, want %d", errHandshake, len(b), clientHelloLen)
	}
	if !bytes.Equal(b[:len(handshakeMagic)], []byte(handshakeMagic)) {
		return nil, fmt.Errorf("%w: not a rookery raft client (bad magic)", errHandshake)
	}
	return b[len(handshakeMagic):], nil
}

// parseServerHello checks the magic and returns the server nonce and proof.
func parseServerHello(b []byte) (snonce, sproof []byte, err error) {
	if len(b) != serverHelloLen {
		return nil, nil, fmt.Errorf("%w: server hello is %d bytes, want %d", errHandshake, len(b), serverHelloLen)
	}
	m := len(handshakeMagic)
	if !bytes.Equal(b[:m], []byte(handshakeMagic)) {
		return nil, nil, fmt.Errorf("%w: not a rookery raft server (bad magic)", errHandshake)
	}
	return b[m : m+handshakeNonceLen], b[m+handshakeNonceLen:], nil
}

// serverHandshake runs the server side over rw (the caller bounds it with
// a deadline) and returns the connection's keys once the client proved
// the secret.
func serverHandshake(rw io.ReadWriter, secret, authKey []byte) (linkKeys, error) {
	hello := make([]byte, clientHelloLen)
	if _, err := io.ReadFull(rw, hello); err != nil {
		return linkKeys{}, fmt.Errorf("%w: read client hello: %w", errHandshake, err)
	}
	cnonce, err := parseClientHello(hello)
	if err != nil {
		return linkKeys{}, err
	}
	snonce := make([]byte, handshakeNonceLen)
	if _, err := rand.Read(snonce); err != nil {
		return linkKeys{}, fmt.Errorf("%w: %w", errHandshake, err)
	}
	reply := make([]byte, 0, serverHelloLen)
	reply = append(reply, handshakeMagic...)
	reply = append(reply, snonce...)
	reply = append(reply, proof(authKey, labelServerProof, cnonce, snonce)...)
	if _, err := rw.Write(reply); err != nil {
		return linkKeys{}, fmt.Errorf("%w: write server hello: %w", errHandshake, err)
	}
	cproof := make([]byte, handshakeProofLen)
	if _, err := io.ReadFull(rw, cproof); err != nil {
		return linkKeys{}, fmt.Errorf("%w: read client proof: %w", errHandshake, err)
	}
	if !hmac.Equal(cproof, proof(authKey, labelClientProof, cnonce, snonce)) {
		return linkKeys{}, fmt.Errorf("%w: the client does not hold the cluster secret", errHandshake)
	}
	return sessionKeys(secret, cnonce, snonce, false)
}

// clientHandshake runs the client side over rw (bounded by the caller).
func clientHandshake(rw io.ReadWriter, secret, authKey []byte) (linkKeys, error) {
	cnonce := make([]byte, handshakeNonceLen)
	if _, err := rand.Read(cnonce); err != nil {
		return linkKeys{}, fmt.Errorf("%w: %w", errHandshake, err)
	}
	hello := append([]byte(handshakeMagic), cnonce...)
	if _, err := rw.Write(hello); err != nil {
		return linkKeys{}, fmt.Errorf("%w: write client hello: %w", errHandshake, err)
	}
	reply := make([]byte, serverHelloLen)
	if _, err := io.ReadFull(rw, reply); err != nil {
		return linkKeys{}, fmt.Errorf("%w: read server hello (the server may have refused us): %w", errHandshake, err)
	}
	snonce, sproof, err := parseServerHello(reply)
	if err != nil {
		return linkKeys{}, err
	}
	if !hmac.Equal(sproof, proof(authKey, labelServerProof, cnonce, snonce)) {
		return linkKeys{}, fmt.Errorf("%w: the server does not hold the cluster secret", errHandshake)
	}
	if _, err := rw.Write(proof(authKey, labelClientProof, cnonce, snonce)); err != nil {
		return linkKeys{}, fmt.Errorf("%w: write client proof: %w", errHandshake, err)
	}
	return sessionKeys(secret, cnonce, snonce, true)
}
