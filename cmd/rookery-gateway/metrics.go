package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/gateway"
)

// gatewayStats is what the collector reads; *gateway.Server implements it.
// The collector lives here, not in internal/metrics, so rookeryd does not
// link the gateway.
type gatewayStats interface {
	Metrics() gateway.Metrics
}

func gwDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("rookery_gateway_"+name, help, labels, nil)
}

var (
	descGWConns         = gwDesc("connections_total", "Client connections accepted, by protocol (imap, pop3, lmtp; TLS variants included).", "protocol")
	descGWActive        = gwDesc("connections_active", "Client connections open now.")
	descGWRejected      = gwDesc("connections_rejected_total", "Connections refused by max_connections or max_connections_per_ip.")
	descGWLogins        = gwDesc("logins_total", "IMAP and POP3 logins, by result: ok, failed (bad credentials or unknown user), rate_limited, tempfail (backend down, RESERVED, directory not ready).", "result")
	descGWRoutes        = gwDesc("routes_total", "Routing decisions for logins and LMTP recipients, by outcome: backend (routed), tempfail (RESERVED mailbox or replica not caught up), unknown (no such mailbox).", "outcome")
	descGWBackendErrors = gwDesc("backend_errors_total", "Failed backend dials, greetings, proxy logins and LMTP transport failures.")
	descGWBytes         = gwDesc("relayed_bytes_total", "Bytes relayed between clients and backends (added when a session ends), by direction (to_backend, to_client).", "direction")
	descGWProtoErrors   = gwDesc("protocol_errors_total", "BAD answers to clients before login.")
	descGWTLSFailures   = gwDesc("tls_handshake_failures_total", "Failed client TLS handshakes.")
	descGWLMTPMessages  = gwDesc("lmtp_messages_total", "LMTP DATA transactions completed.")
	descGWLMTPRcpts     = gwDesc("lmtp_recipients_total", "LMTP recipients by final result: ok (2xx), tempfail (4xx), permfail (5xx).", "result")
	descGWRevision      = gwDesc("replica_revision", "Directory revision the gateway's replica has applied.")
	descGWHead          = gwDesc("replica_head_revision", "Newest directory revision the feed has reported.")
	descGWLag           = gwDesc("replica_lag_revisions", "Revisions reported by the feed but not yet applied (head - applied).")
	descGWEntries       = gwDesc("replica_entries", "Routable names held by the replica.")
	descGWReady         = gwDesc("replica_ready", "1 while the replica is caught up (what /readyz answers), 0 otherwise.")
	descGWSinceContact  = gwDesc("replica_last_contact_seconds", "Seconds since the directory feed last reported anything (events or progress).")
)

// gatewayCollector reads a gateway's counters at scrape time.
type gatewayCollector struct{ gw gatewayStats }

// Describe implements prometheus.Collector.
func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGWConns, descGWActive, descGWRejected, descGWLogins, descGWRoutes,
		descGWBackendErrors, descGWBytes, descGWProtoErrors, descGWTLSFailures, descGWLMTPMessages, descGWLMTPRcpts,
		descGWRevision, descGWHead, descGWLag, descGWEntries, descGWReady, descGWSinceContact} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.gw.Metrics()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(descGWConns, m.ConnectionsIMAP, "imap")
	counter(descGWConns, m.ConnectionsPOP3, "pop3")
	counter(descGWConns, m.ConnectionsLMTP, "lmtp")
	gauge(descGWActive, float64(m.ActiveConnections))
	counter(descGWRejected, m.RejectedConnections)
	counter(descGWLogins, m.LoginsOK, "ok")
	counter(descGWLogins, m.LoginsFailed, "failed")
	counter(descGWLogins, m.LoginsRateLimited, "rate_limited")
	counter(descGWLogins, m.LoginsTempFailed, "tempfail")
	counter(descGWRoutes, m.Routed, "backend")
	counter(descGWRoutes, m.RoutingReserved+m.RoutingNotReady, "tempfail")
	counter(descGWRoutes, m.RoutingMisses, "unknown")
	counter(descGWBackendErrors, m.BackendErrors)
	counter(descGWBytes, m.BytesClientToBackend, "to_backend")
	counter(descGWBytes, m.BytesBackendToClient, "to_client")
	counter(descGWProtoErrors, m.ProtocolErrors)
	counter(descGWTLSFailures, m.TLSFailures)
	counter(descGWLMTPMessages, m.LMTPMessages)
	counter(descGWLMTPRcpts, m.LMTPRecipientsOK, "ok")
	counter(descGWLMTPRcpts, m.LMTPRecipientsTempErr, "tempfail")
	counter(descGWLMTPRcpts, m.LMTPRecipientsPermErr, "permfail")
	if r := m.Replica; r != nil {
		gauge(descGWRevision, float64(r.Revision))
		gauge(descGWHead, float64(r.HeadRevision))
		gauge(descGWLag, float64(r.LagRevisions))
		gauge(descGWEntries, float64(r.Entries))
		ready := 0.0
		if r.Ready {
			ready = 1
		}
		gauge(descGWReady, ready)
		gauge(descGWSinceContact, r.SinceContact.Seconds())
	}
}
