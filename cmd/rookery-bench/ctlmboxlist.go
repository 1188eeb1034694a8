package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rookery/rookery/internal/mupdateclient"
)

// ctlConfig is the ctlmboxlist subcommand's settings.
type ctlConfig struct {
	Backends []target // Name = label, Addr = path of the backend's imapd.conf
	N        int
	Missing  int
	CyrusBin string
	RunID    string
	Client   mupdateclient.Config
}

// ctlStep is one timed `ctl_mboxlist -m`.
type ctlStep struct {
	What    string
	Local   int // our entries in the backend's mailboxes.db
	Missing int // of those, how many the MUPDATE server did not have
	Time    time.Duration
}

type ctlReport struct {
	Backend  target
	Server   string // servername (the location prefix)
	Mupdate  string // mupdate_server from imapd.conf
	Steps    []ctlStep
	OnMaster int // our entries the MUPDATE server lists for this backend afterwards
}

func runCtlMboxlist(ctx context.Context, log *slog.Logger, out io.Writer, args []string) error {
	cfg := ctlConfig{N: 10000, Missing: 9000, CyrusBin: "/usr/lib/cyrus/bin", Client: mupdateclient.DefaultConfig()}
	fs := flag.NewFlagSet("ctlmboxlist", flag.ContinueOnError)
	fs.Func("backend", "name=/path/to/backend/imapd.conf of a running Cyrus backend (repeatable; the first is the ratio's baseline)", func(s string) error {
		name, conf, ok := strings.Cut(s, "=")
		if !ok || name == "" || conf == "" {
			return fmt.Errorf("backend %q: want name=/path/imapd.conf", s)
		}
		cfg.Backends = append(cfg.Backends, target{Name: name, Addr: conf})
		return nil
	})
	fs.IntVar(&cfg.N, "n", cfg.N, "local mailboxes to create on each backend (ctl_mboxlist -u)")
	fs.IntVar(&cfg.Missing, "missing", cfg.Missing, "how many of them are missing on the MUPDATE server for the timed push")
	fs.StringVar(&cfg.CyrusBin, "cyrus-bin", cfg.CyrusBin, "directory with ctl_mboxlist")
	fs.StringVar(&cfg.RunID, "run-id", "", "unique part of the mailbox names (default: random)")
	fs.StringVar(&cfg.Client.User, "user", cfg.Client.User, "PLAIN user for checking the MUPDATE server afterwards")
	fs.StringVar(&cfg.Client.Password, "pass", cfg.Client.Password, "PLAIN password")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	if len(cfg.Backends) == 0 {
		return fmt.Errorf("at least one --backend name=/path/imapd.conf is required")
	}
	if cfg.N < 1 || cfg.Missing < 0 || cfg.Missing > cfg.N || !validRunID(cfg.RunID) {
		return fmt.Errorf("need 0 <= --missing <= --n, --n >= 1 and an alphanumeric --run-id")
	}
	fmt.Fprintf(out, "rookery-bench ctlmboxlist: run %s, %d local mailboxes per backend, %d of them missing on the MUPDATE server; load average at start %s\n",
		cfg.RunID, cfg.N, cfg.Missing, loadAvg())
	var reps []*ctlReport
	for i, be := range cfg.Backends {
		rep, err := ctlBench(ctx, log.With("backend", be.Name), cfg, i, be)
		if err != nil {
			return fmt.Errorf("backend %s: %w", be.Name, err)
		}
		reps = append(reps, rep)
	}
	printCtl(out, reps)
	fmt.Fprintf(out, "load average at end %s\n", loadAvg())
	return nil
}

func ctlBench(ctx context.Context, log *slog.Logger, cfg ctlConfig, idx int, be target) (*ctlReport, error) {
	conf, err := readImapdConf(be.Addr)
	if err != nil {
		return nil, err
	}
	rep := &ctlReport{Backend: be, Server: conf["servername"], Mupdate: conf["mupdate_server"]}
	part := conf["defaultpartition"]
	if part == "" {
		part = "default"
	}
	prefix := fmt.Sprintf("user.cmb%sb%d", cfg.RunID, idx)
	first := cfg.N - cfg.Missing

	step := func(what string, local, missing int) error {
		log.Info("ctl_mboxlist -m", "step", what)
		t0 := time.Now()
		if _, err := ctlMboxlist(ctx, cfg.CyrusBin, be.Addr, nil, "-m"); err != nil {
			return err
		}
		rep.Steps = append(rep.Steps, ctlStep{What: what, Local: local, Missing: missing, Time: time.Since(t0)})
		return nil
	}
	if first > 0 {
		log.Info("undump", "entries", first)
		if _, err := ctlMboxlist(ctx, cfg.CyrusBin, be.Addr, undumpJSON(prefix, part, 0, first), "-u"); err != nil {
			return nil, err
		}
		if err := step("first push", first, first); err != nil {
			return nil, err
		}
	}
	log.Info("undump", "entries", cfg.Missing)
	if _, err := ctlMboxlist(ctx, cfg.CyrusBin, be.Addr, undumpJSON(prefix, part, first, cfg.N), "-u"); err != nil {
		return nil, err
	}
	if err := step("push with missing", cfg.N, cfg.Missing); err != nil {
		return nil, err
	}
	if err := step("in sync", cfg.N, 0); err != nil {
		return nil, err
	}
	rep.OnMaster, err = countOnMaster(ctx, cfg.Client, rep.Mupdate, rep.Server+"!", prefix)
	if err != nil {
		return nil, fmt.Errorf("checking the MUPDATE server: %w", err)
	}
	return rep, nil
}

// undumpJSON builds `ctl_mboxlist -u` input for mailboxes [from, to) of
// this backend. Only mailboxes.db entries are made (no spool), which is all
// `-m` reads.
func undumpJSON(prefix, partition string, from, to int) []byte {
	now := strconv.FormatInt(time.Now().Unix(), 10)
	var buf bytes.Buffer
	writeDump(&buf, to-from, func(i int) dumpMailbox {
		name := fmt.Sprintf("%sn%06d", prefix, from+i)
		owner := strings.TrimPrefix(name, "user.")
		return dumpMailbox{name: name, owner: owner, partition: partition, mtime: now,
			uniqueid: fmt.Sprintf("%024s", strings.ReplaceAll(owner, ".", ""))}
	})
	return buf.Bytes()
}

// dumpMailbox is one mailbox of a `ctl_mboxlist -d` dump.
type dumpMailbox struct{ name, owner, server, partition, uniqueid, mtime string }

// writeDump writes n mailboxes as `ctl_mboxlist -d` prints them on Cyrus
// 3.6 (internal/migrate/testdata/ctl_mboxlist-d.json): one object per
// mailbox, keyed by its internal name; an entry with a server is a remote
// one (mbtype "er"), as on a mupdate master.
func writeDump(w io.Writer, n int, at func(int) dumpMailbox) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("{\n")
	for i := range n {
		m := at(i)
		rec := map[string]any{
			"name": m.name, "mtime": m.mtime, "uidvalidity": m.mtime, "createdmodseq": "1", "foldermodseq": "1",
			"mbtype": "e", "partition": m.partition, "acl": map[string]string{m.owner: "lrswipkxtecdan"},
			"uniqueid": m.uniqueid, "name_history": []any{},
		}
		if m.server != "" {
			rec["mbtype"], rec["server"] = "er", m.server
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		sep := ",\n"
		if i == n-1 {
			sep = "\n"
		}
		fmt.Fprintf(bw, "%q: %s%s", m.name, b, sep)
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// ctlMboxlist runs ctl_mboxlist as the cyrus user (via runuser when root).
func ctlMboxlist(ctx context.Context, bin, conf string, stdin []byte, args ...string) (string, error) {
	return asCyrus(ctx, stdin, bin+"/ctl_mboxlist", append([]string{"-C", conf}, args...)...)
}

// asCyrus runs a Cyrus program as the cyrus user (via runuser when root).
func asCyrus(ctx context.Context, stdin []byte, prog string, args ...string) (string, error) {
	argv := append([]string{prog}, args...)
	if os.Geteuid() == 0 {
		argv = append([]string{"runuser", "-u", "cyrus", "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// chownCyrus gives path to the cyrus user, so a Cyrus program can read it.
func chownCyrus(ctx context.Context, path string) error {
	if out, err := exec.CommandContext(ctx, "chown", "cyrus", path).CombinedOutput(); err != nil {
		return fmt.Errorf("chown cyrus %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// readImapdConf reads a murder backend's imapd.conf.
func readImapdConf(path string) (map[string]string, error) {
	conf, err := readConfKeys(path)
	if err != nil {
		return nil, err
	}
	if conf["servername"] == "" || conf["mupdate_server"] == "" {
		return nil, fmt.Errorf("%s is not a murder backend config (needs servername and mupdate_server)", path)
	}
	return conf, nil
}

// readConfKeys reads "key: value" lines of an imapd.conf.
func readConfKeys(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading Cyrus config: %w", err)
	}
	defer f.Close()
	conf := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			conf[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return conf, nil
}

// countOnMaster counts the entries under prefix that the MUPDATE server
// lists for this backend: proof that the push really happened.
func countOnMaster(ctx context.Context, cfg mupdateclient.Config, addr, location, prefix string) (int, error) {
	c, err := mupdateclient.Dial(ctx, addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	list, err := c.List(ctx, location)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range list {
		if strings.HasPrefix(e.Name, prefix) && !e.Reserved {
			n++
		}
	}
	_ = c.Logout(ctx)
	return n, nil
}

func printCtl(out io.Writer, reps []*ctlReport) {
	for _, r := range reps {
		fmt.Fprintf(out, "\n== %s: backend %q (%s) -> MUPDATE %s\n", r.Backend.Name, r.Server, r.Backend.Addr, r.Mupdate)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "ctl_mboxlist -m\tlocal (ours)\tmissing on server\ttime\t")
		for _, s := range r.Steps {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.3fs\t\n", s.What, s.Local, s.Missing, s.Time.Seconds())
		}
		tw.Flush()
		fmt.Fprintf(out, "MUPDATE server lists %d of our entries at %s! afterwards\n", r.OnMaster, r.Server)
	}
	if len(reps) < 2 {
		return
	}
	base := reps[0]
	for _, r := range reps[1:] {
		fmt.Fprintf(out, "\n== ratio %s/%s of ctl_mboxlist -m time (<1 means %s is faster)\n", r.Backend.Name, base.Backend.Name, r.Backend.Name)
		for i, s := range r.Steps {
			if i < len(base.Steps) {
				fmt.Fprintf(out, "%-18s %s\n", s.What, ratio(s.Time.Seconds(), base.Steps[i].Time.Seconds()))
			}
		}
	}
}
