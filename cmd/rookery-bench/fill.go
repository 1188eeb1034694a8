package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// fillConfig is the fill subcommand's settings: a directory of Total
// mailboxes spread over Servers backends that take no part in the run
// (fill0!default, fill1!default, ...), so that ctl_mboxlist -m can be timed
// with its server's entries among many others.
type fillConfig struct {
	Total      int
	Servers    int
	Dump       string // ctl_mboxlist -d JSON, for rookeryctl import --from-dump
	MasterConf string // a stopped Cyrus mupdate master's imapd.conf, or ""
	CyrusBin   string
}

// fillEntry is the i-th fill mailbox. Names and uniqueids are fixed, so a
// second run's import finds them already there.
type fillEntry struct{ name, owner, server, uniqueid string }

func fillAt(i, servers int) fillEntry {
	owner := fmt.Sprintf("fill%07d", i)
	return fillEntry{name: "user." + owner, owner: owner, server: fmt.Sprintf("fill%d", i%servers), uniqueid: fmt.Sprintf("%024x", i)}
}

// fillMtime is every fill entry's mtime and uidvalidity.
const fillMtime = "1796198610"

func runFill(ctx context.Context, log *slog.Logger, out io.Writer, args []string) error {
	cfg := fillConfig{Servers: 8, CyrusBin: "/usr/lib/cyrus/bin"}
	fs := flag.NewFlagSet("fill", flag.ContinueOnError)
	fs.IntVar(&cfg.Total, "total", 0, "mailboxes to generate (user.fill0000000 ...)")
	fs.IntVar(&cfg.Servers, "servers", cfg.Servers, "backends to spread them over (fill0 ...)")
	fs.StringVar(&cfg.Dump, "dump", "", "write them here as ctl_mboxlist -d JSON (for rookeryctl import --from-dump)")
	fs.StringVar(&cfg.MasterConf, "cyrus-master-conf", "", "imapd.conf of a STOPPED Cyrus mupdate master whose mailboxes.db is replaced by them")
	fs.StringVar(&cfg.CyrusBin, "cyrus-bin", cfg.CyrusBin, "directory with cvt_cyrusdb")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Total < 1 || cfg.Servers < 1 || (cfg.Dump == "" && cfg.MasterConf == "") {
		return fmt.Errorf("need --total >= 1, --servers >= 1 and --dump and/or --cyrus-master-conf")
	}
	if cfg.Dump != "" {
		if err := writeFile(cfg.Dump, func(w io.Writer) error { return writeFillDump(w, cfg.Total, cfg.Servers) }); err != nil {
			return err
		}
		fmt.Fprintf(out, "fill: %d mailboxes on %d other servers written to %s\n", cfg.Total, cfg.Servers, cfg.Dump)
	}
	if cfg.MasterConf == "" {
		return nil
	}
	t0 := time.Now()
	if err := fillCyrusMaster(ctx, log, cfg); err != nil {
		return err
	}
	fmt.Fprintf(out, "fill: Cyrus master's mailboxes.db holds %d mailboxes on %d other servers (%.1fs)\n", cfg.Total, cfg.Servers, time.Since(t0).Seconds())
	return nil
}

// writeFillDump writes the fill as `ctl_mboxlist -d` prints a Cyrus 3.6
// mupdate master's entries.
func writeFillDump(w io.Writer, total, servers int) error {
	return writeDump(w, total, func(i int) dumpMailbox {
		e := fillAt(i, servers)
		return dumpMailbox{name: e.name, owner: e.owner, server: e.server, partition: "default", uniqueid: e.uniqueid, mtime: fillMtime}
	})
}

// writeFillFlat writes the fill as the records of a Cyrus 3.6 mailboxes.db
// in cyrusdb's flat format (key TAB value, sorted): per mailbox an "I"
// record by uniqueid and an "N" record by internal name, exactly what
// `ctl_mboxlist -u` stores for the JSON of writeFillDump (checked against
// real Cyrus in fill_test.go). Converting this file is one transaction,
// where ctl_mboxlist -u commits (and fsyncs) once per mailbox.
func writeFillFlat(w io.Writer, total, servers int) error {
	bw := bufio.NewWriter(w)
	record := func(e fillEntry) string {
		return fmt.Sprintf("P default S %s V %s C 1 F 1 M %s A %%(%s lrswipkxtecdan)", e.server, fillMtime, fillMtime, e.owner)
	}
	for i := range total { // "I" < "N", and both run in key order
		e := fillAt(i, servers)
		fmt.Fprintf(bw, "I%s\t%%(T er N user\x1f%s %s H ())\n", e.uniqueid, e.owner, record(e))
	}
	for i := range total {
		e := fillAt(i, servers)
		fmt.Fprintf(bw, "Nuser\x1f%s\t%%(T er I %s %s)\n", e.owner, e.uniqueid, record(e))
	}
	return bw.Flush()
}

// fillCyrusMaster replaces the stopped master's mailboxes.db by the fill:
// the flat file goes into its configdirectory (readable by the cyrus user)
// and cvt_cyrusdb turns it into the twoskip database mupdate reads.
func fillCyrusMaster(ctx context.Context, log *slog.Logger, cfg fillConfig) error {
	conf, err := readConfKeys(cfg.MasterConf)
	if err != nil {
		return err
	}
	dir := conf["configdirectory"]
	if dir == "" {
		return fmt.Errorf("%s has no configdirectory", cfg.MasterConf)
	}
	flat := filepath.Join(dir, "fill.flat")
	if err := writeFile(flat, func(w io.Writer) error { return writeFillFlat(w, cfg.Total, cfg.Servers) }); err != nil {
		return err
	}
	defer os.Remove(flat)
	if os.Geteuid() == 0 {
		if err := chownCyrus(ctx, flat); err != nil {
			return err
		}
	}
	log.Info("cvt_cyrusdb", "records", 2*cfg.Total, "into", filepath.Join(dir, "mailboxes.db"))
	_, err = asCyrus(ctx, nil, cfg.CyrusBin+"/cvt_cyrusdb", "-C", cfg.MasterConf, flat, "flat", filepath.Join(dir, "mailboxes.db"), "twoskip")
	return err
}

func writeFile(path string, fill func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}
