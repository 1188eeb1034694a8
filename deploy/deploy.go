// Package deploy holds what an operator loads next to Rookery — the
// Prometheus alerting rules and the Grafana dashboard — and the checks
// that keep them loadable and in step with the metrics the binaries
// export (see the tests here and in internal/metrics).
package deploy

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed rookery-alerts.yml
var rulesFile []byte

//go:embed grafana-dashboard.json
var dashboardFile []byte

// RuleGroup and Rule are the parts of a Prometheus rules file the checks
// read.
type RuleGroup struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is one alerting or recording rule.
type Rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Rules parses rookery-alerts.yml strictly: a key Prometheus does not know
// is an error, as it is for Prometheus.
func Rules() ([]RuleGroup, error) {
	var f struct {
		Groups []RuleGroup `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(rulesFile)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("rookery-alerts.yml: %w", err)
	}
	return f.Groups, nil
}

// Panel is a dashboard panel with its queries.
type Panel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// Dashboard parses grafana-dashboard.json and returns its panels.
func Dashboard() ([]Panel, error) {
	var d struct {
		Title  string  `json:"title"`
		Panels []Panel `json:"panels"`
	}
	if err := json.Unmarshal(dashboardFile, &d); err != nil {
		return nil, fmt.Errorf("grafana-dashboard.json: %w", err)
	}
	if d.Title == "" || len(d.Panels) == 0 {
		return nil, fmt.Errorf("grafana-dashboard.json: no title or no panels")
	}
	return d.Panels, nil
}

// Exprs returns every PromQL expression of the rules and the dashboard,
// each with where it comes from.
func Exprs() (map[string]string, error) {
	groups, err := Rules()
	if err != nil {
		return nil, err
	}
	panels, err := Dashboard()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, g := range groups {
		for _, r := range g.Rules {
			out["rule "+r.Alert+r.Record] = r.Expr
		}
	}
	for _, p := range panels {
		for i, t := range p.Targets {
			out[fmt.Sprintf("panel %q target %d", p.Title, i)] = t.Expr
		}
	}
	return out, nil
}
