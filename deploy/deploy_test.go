package deploy

import (
	"reflect"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
)

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
		bad  bool
	}{
		{expr: "rookery_server_has_leader == 0", want: []string{"rookery_server_has_leader"}},
		{expr: `increase(rookery_server_leader_changes_seen_total{job="rookery"}[15m]) > 3`, want: []string{"rookery_server_leader_changes_seen_total"}},
		{expr: "histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket[5m]))) > 0.5", want: []string{"a_bucket"}},
		{expr: "x > 1000 or y > 60", want: []string{"x", "y"}},
		{expr: `sum without (peer) (z{peer=~"n(1|2)"}) * on(instance) group_left(version) info offset 5m`, want: []string{"z", "info"}},
		{expr: "1e3 + 2", bad: true},
		{expr: "sum(rate(x[5m])", bad: true},
		{expr: `x{a="b}`, bad: true},
	} {
		got, err := MetricNames(tc.expr)
		if tc.bad {
			if err == nil {
				t.Errorf("MetricNames(%q) = %q, want an error", tc.expr, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("MetricNames(%q) = %q, %v; want %q", tc.expr, got, err, tc.want)
		}
	}
}

// TestRulesLoad checks what Prometheus checks when it loads the file:
// known keys only, a name and an expression per rule, a valid `for`,
// annotations that are valid templates (with Prometheus's $labels and
// $value defined), and a severity on every alert.
func TestRulesLoad(t *testing.T) {
	groups, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || alerts[r.Alert] {
				t.Errorf("rule %q: missing or duplicate alert name", r.Alert)
			}
			alerts[r.Alert] = true
			if _, err := MetricNames(r.Expr); err != nil {
				t.Errorf("%s: expr %q: %v", r.Alert, r.Expr, err)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			for k, text := range r.Annotations {
				defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"
				if _, err := template.New(k).Parse(defs + text); err != nil {
					t.Errorf("%s: annotation %s: %v", r.Alert, k, err)
				}
			}
		}
	}
	// The alerts the operator guide promises.
	for _, want := range []string{"RookeryNoLeader", "RookeryFrequentLeaderChanges", "RookerySlowLogFsync",
		"RookeryPeerUnreachable", "RookeryProposalsFailing", "RookeryStaleReservation", "RookeryGatewayReplicaLagging"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

func TestDashboardLoads(t *testing.T) {
	panels, err := Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if _, err := MetricNames(q.Expr); err != nil {
				t.Errorf("panel %q: %q: %v", p.Title, q.Expr, err)
			}
			if strings.Contains(q.Expr, "$") {
				t.Errorf("panel %q uses a template variable the dashboard does not define: %q", p.Title, q.Expr)
			}
		}
	}
}
