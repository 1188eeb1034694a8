// Package e2e holds end-to-end tests that run real rookeryd processes
// against a real Cyrus murder (Debian's cyrus-imapd 3.6 packages, started
// by internal/murder): Cyrus backends push to Rookery over MUPDATE, the
// Cyrus frontend's mupdate slave syncs from it, users are proxied and mail
// is delivered, while Rookery nodes are killed.
package e2e
