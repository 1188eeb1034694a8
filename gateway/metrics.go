package gateway

import "sync/atomic"

// metrics are the gateway's counters. They are plain atomics so the hot
// paths pay one atomic add; Snapshot copies them into a struct that
// rookery-gateway exports in the Prometheus format (internal/metrics).
type metrics struct {
	connIMAP, connPOP3, connLMTP atomic.Uint64
	active                       atomic.Int64
	rejectedConns                atomic.Uint64
	loginsOK, loginsFailed       atomic.Uint64
	loginsRateLimited            atomic.Uint64
	loginsTempFailed             atomic.Uint64
	routed                       atomic.Uint64
	routingMisses                atomic.Uint64
	routingNotReady              atomic.Uint64
	routingReserved              atomic.Uint64
	backendErrors                atomic.Uint64
	bytesToBackend               atomic.Uint64
	bytesToClient                atomic.Uint64
	protocolErrors               atomic.Uint64
	tlsFailures                  atomic.Uint64
	lmtpMessages                 atomic.Uint64
	lmtpRcptOK                   atomic.Uint64
	lmtpRcptTempFail             atomic.Uint64
	lmtpRcptPermFail             atomic.Uint64
}

// Metrics is a snapshot of the gateway's counters. Counters only grow;
// ActiveConnections is a gauge. Relayed bytes are added when a relayed
// session ends.
type Metrics struct {
	ConnectionsIMAP   uint64
	ConnectionsPOP3   uint64
	ConnectionsLMTP   uint64
	ActiveConnections int64
	// RejectedConnections hit max_connections or max_connections_per_ip.
	RejectedConnections uint64

	LoginsOK          uint64
	LoginsFailed      uint64 // bad credentials or unknown user
	LoginsRateLimited uint64
	LoginsTempFailed  uint64 // backend down, RESERVED, directory not ready

	// Routing outcomes of logins and LMTP recipients: Routed found an
	// active mailbox; RoutingMisses a name not in a caught-up replica
	// (unknown user); RoutingNotReady a name not in a replica that is not
	// caught up, and RoutingReserved a RESERVED mailbox (both answered with
	// temporary failures).
	Routed          uint64
	RoutingMisses   uint64
	RoutingNotReady uint64
	RoutingReserved uint64
	// BackendErrors counts failed dials, greetings, logins as the proxy
	// identity, and LMTP transport failures.
	BackendErrors uint64

	BytesClientToBackend uint64
	BytesBackendToClient uint64

	ProtocolErrors uint64 // BAD answers to clients before login
	TLSFailures    uint64 // failed handshakes

	LMTPMessages          uint64 // DATA transactions completed
	LMTPRecipientsOK      uint64 // per-recipient 2xx after DATA
	LMTPRecipientsTempErr uint64 // 4xx at RCPT or DATA
	LMTPRecipientsPermErr uint64 // 5xx at RCPT or DATA

	// Replica is filled when the Router is a *Replica (or reports
	// ReplicaStats).
	Replica *ReplicaStats
}

func (m *metrics) snapshot() Metrics {
	return Metrics{
		ConnectionsIMAP:       m.connIMAP.Load(),
		ConnectionsPOP3:       m.connPOP3.Load(),
		ConnectionsLMTP:       m.connLMTP.Load(),
		ActiveConnections:     m.active.Load(),
		RejectedConnections:   m.rejectedConns.Load(),
		LoginsOK:              m.loginsOK.Load(),
		LoginsFailed:          m.loginsFailed.Load(),
		LoginsRateLimited:     m.loginsRateLimited.Load(),
		LoginsTempFailed:      m.loginsTempFailed.Load(),
		Routed:                m.routed.Load(),
		RoutingMisses:         m.routingMisses.Load(),
		RoutingNotReady:       m.routingNotReady.Load(),
		RoutingReserved:       m.routingReserved.Load(),
		BackendErrors:         m.backendErrors.Load(),
		BytesClientToBackend:  m.bytesToBackend.Load(),
		BytesBackendToClient:  m.bytesToClient.Load(),
		ProtocolErrors:        m.protocolErrors.Load(),
		TLSFailures:           m.tlsFailures.Load(),
		LMTPMessages:          m.lmtpMessages.Load(),
		LMTPRecipientsOK:      m.lmtpRcptOK.Load(),
		LMTPRecipientsTempErr: m.lmtpRcptTempFail.Load(),
		LMTPRecipientsPermErr: m.lmtpRcptPermFail.Load(),
	}
}
