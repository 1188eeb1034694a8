package mupdatecompat

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestAuthenticateForms runs the SASL exchanges Cyrus clients and others
// use: each step sends a line and expects the server's next line(s).
func TestAuthenticateForms(t *testing.T) {
	ir := plainIR("mupdate", "mupdatepw")
	type step struct{ send, want string }
	tests := []struct {
		name  string
		steps []step
	}{
		{"cyrus: quoted mechanism, literal-plus response", []step{
			{`A01 AUTHENTICATE "PLAIN" {` + strconv.Itoa(len(ir)) + "+}\r\n" + ir + "\r\n", `A01 OK "Authenticated"`}}},
		{"atom mechanism, quoted response", []step{
			{"A01 AUTHENTICATE PLAIN \"" + ir + "\"\r\n", `A01 OK "Authenticated"`}}},
		{"literal mechanism, atom response", []step{
			{"A01 AUTHENTICATE {5+}\r\nplain " + ir + "\r\n", `A01 OK "Authenticated"`}}},
		{"synchronizing literal response", []step{
			{`A01 AUTHENTICATE "PLAIN" {` + strconv.Itoa(len(ir)) + "}\r\n", "+ go ahead"},
			{ir + "\r\n", `A01 OK "Authenticated"`}}},
		{"no initial response: empty challenge line", []step{
			{"A01 AUTHENTICATE \"PLAIN\"\r\n", ""},
			{ir + "\r\n", `A01 OK "Authenticated"`}}},
		{"empty initial response atom = is empty", []step{
			{"A01 AUTHENTICATE \"PLAIN\" =\r\n", `A01 NO "authentication failure"`}}},
		{"cancel with star", []step{
			{"A01 AUTHENTICATE \"PLAIN\"\r\n", ""},
			{"*\r\n", `A01 NO "Client canceled authentication"`}}},
		{"bad base64 continuation", []step{
			{"A01 AUTHENTICATE \"PLAIN\"\r\n", ""},
			{"@@@\r\n", `A01 NO "bad protocol / cancel"`}}},
		{"wrong password, then retry", []step{
			{"A01 AUTHENTICATE \"PLAIN\" \"" + plainIR("mupdate", "wrong") + "\"\r\n", `A01 NO "authentication failure"`},
			{"A02 AUTHENTICATE \"PLAIN\" \"" + ir + "\"\r\n", `A02 OK "Authenticated"`}}},
		{"unknown user", []step{
			{"A01 AUTHENTICATE \"PLAIN\" \"" + plainIR("ghost", "mupdatepw") + "\"\r\n", `A01 NO "authentication failure"`}}},
		{"malformed PLAIN blob", []step{
			{"A01 AUTHENTICATE \"PLAIN\" \"" + b64("no-nuls") + "\"\r\n", `A01 NO "authentication failure"`}}},
		{"authzid proxy by a listed proxy", []step{
			{"A01 AUTHENTICATE \"PLAIN\" \"" + b64("fe\x00gw\x00gwpw") + "\"\r\n", `A01 OK "Authenticated"`},
			{"R1 RESERVE \"x\" \"be1!p\"\r\n", `R1 NO "permission denied"`}}}, // acts as reader fe
		{"authzid proxy by an unlisted writer refused", []step{
			{"A01 AUTHENTICATE \"PLAIN\" \"" + b64("fe\x00mupdate\x00mupdatepw") + "\"\r\n", `A01 NO "authorization failure"`}}},
		{"authzid escalation: bound backend as an unbound writer refused", []step{
			{"A01 AUTHENTICATE \"PLAIN\" \"" + b64("mupdate\x00be1\x00be1pw") + "\"\r\n", `A01 NO "authorization failure"`},
			{"D1 DELETE \"x\"\r\n", `D1 BAD "Please login first"`}}},
		{"authzid escalation: bound backend as another backend refused", []step{
			{"A01 AUTHENTICATE \"PLAIN\" \"" + b64("be2\x00be1\x00be1pw") + "\"\r\n", `A01 NO "authorization failure"`}}},
		{"authzid proxy by reader refused", []step{
			{"A01 AUTHENTICATE \"PLAIN\" \"" + b64("mupdate\x00fe\x00fepw") + "\"\r\n", `A01 NO "authorization failure"`}}},
		{"LOGIN with challenges", []step{
			{"A01 AUTHENTICATE \"LOGIN\"\r\n", b64("Username:")},
			{b64("mupdate") + "\r\n", b64("Password:")},
			{b64("mupdatepw") + "\r\n", `A01 OK "Authenticated"`}}},
		{"LOGIN with user name as initial response", []step{
			{"A01 AUTHENTICATE \"LOGIN\" \"" + b64("mupdate") + "\"\r\n", b64("Password:")},
			{b64("mupdatepw") + "\r\n", `A01 OK "Authenticated"`}}},
		{"LOGIN wrong password", []step{
			{"A01 AUTHENTICATE \"LOGIN\" \"" + b64("mupdate") + "\"\r\n", b64("Password:")},
			{b64("nope") + "\r\n", `A01 NO "authentication failure"`}}},
		{"LOGIN canceled at password", []step{
			{"A01 AUTHENTICATE \"LOGIN\"\r\n", b64("Username:")},
			{b64("mupdate") + "\r\n", b64("Password:")},
			{"*\r\n", `A01 NO "Client canceled authentication"`}}},
	}
	env := newEnv(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := env.dial()
			c.t = t
			for _, s := range tt.steps {
				c.send(s.send)
				c.expect(s.want)
			}
			c.send("Z1 LOGOUT\r\n")
			c.expect(`Z1 OK "bye-bye"`)
		})
	}
	logs := env.logs.String()
	for _, secret := range []string{"mupdatepw", "fepw", ir, b64("mupdatepw"), "wrong"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret or SASL blob %q", secret)
		}
	}
	if !strings.Contains(logs, "mupdate login failed") {
		t.Error("failed logins are not logged")
	}
}

func TestRequireTLSForAuthOffersNoMechanismInClear(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.TLSConfig = testTLSConfig(t)
		c.RequireTLSForAuth = true
	})
	c := env.dial()
	if c.banner[0] != "* AUTH" || c.banner[1] != "* STARTTLS" {
		t.Fatalf("banner = %q, want an empty AUTH line then STARTTLS", c.banner)
	}
	c.send("A01 AUTHENTICATE \"PLAIN\" \"" + plainIR("mupdate", "mupdatepw") + "\"\r\n")
	c.expect(`A01 NO "encryption needed to use mechanism"`)
}
