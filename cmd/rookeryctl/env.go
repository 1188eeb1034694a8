package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/client"
)

// defaultEndpoints are the three nodes of `make run`, so that status shows
// the whole local cluster and every command fails over.
const defaultEndpoints = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"

// globalFlags are accepted before and after the command name.
type globalFlags struct {
	endpoints          string
	output             string
	token              string
	cacert, cert, key  string
	serverName         string
	insecureSkipVerify bool
	timeout            time.Duration
}

func (g *globalFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	ep := getenv("ROOKERY_ENDPOINTS")
	if ep == "" {
		ep = defaultEndpoints
	}
	fs.StringVar(&g.endpoints, "endpoints", ep, "comma-separated gRPC endpoints host:port (env ROOKERY_ENDPOINTS)")
	fs.StringVar(&g.output, "output", "table", "output format: table or json")
	fs.StringVar(&g.token, "token", getenv("ROOKERY_TOKEN"), "bearer token, or user:password (env ROOKERY_TOKEN)")
	fs.StringVar(&g.cacert, "cacert", "", "PEM CA that signs the servers' certificates (enables TLS)")
	fs.StringVar(&g.cert, "cert", "", "PEM client certificate for mTLS (enables TLS)")
	fs.StringVar(&g.key, "key", "", "PEM key of --cert")
	fs.StringVar(&g.serverName, "server-name", "", "expected server certificate name (default: the endpoint host)")
	fs.BoolVar(&g.insecureSkipVerify, "insecure-skip-verify", false, "TLS without verifying the server certificate (testing only)")
	fs.DurationVar(&g.timeout, "timeout", 5*time.Second, "bound on each command (watch and snapshot run until done)")
}

func (g *globalFlags) check() error {
	if g.output != "table" && g.output != "json" {
		return usagef("--output must be table or json, not %q", g.output)
	}
	if (g.cert == "") != (g.key == "") {
		return usagef("--cert and --key go together")
	}
	if g.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if strings.TrimSpace(g.endpoints) == "" {
		return usagef("--endpoints is empty")
	}
	return nil
}

func (g *globalFlags) tlsConfig() (*tls.Config, error) {
	if g.cacert == "" && g.cert == "" && !g.insecureSkipVerify {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: g.serverName, InsecureSkipVerify: g.insecureSkipVerify}
	if g.cacert != "" {
		pem, err := os.ReadFile(g.cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", g.cacert)
		}
		cfg.RootCAs = pool
	}
	if g.cert != "" {
		cert, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// env is what a command runs with.
type env struct {
	global globalFlags
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	cl     *client.Client
}

func (e *env) json() bool { return e.global.output == "json" }

// client dials the endpoints on first use.
func (e *env) client() (*client.Client, error) {
	if e.cl != nil {
		return e.cl, nil
	}
	if err := e.global.check(); err != nil {
		return nil, err
	}
	tlsCfg, err := e.global.tlsConfig()
	if err != nil {
		return nil, usagef("%v", err)
	}
	cfg := client.DefaultConfig()
	cfg.TLS = tlsCfg
	cfg.Token = e.global.token
	cfg.AttemptTimeout = e.global.timeout
	cl, err := client.Dial(strings.Split(e.global.endpoints, ","), cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	e.cl = cl
	return cl, nil
}

// timed bounds a unary command by --timeout.
func (e *env) timed(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.global.timeout)
}

func (e *env) close() {
	if e.cl != nil {
		e.cl.Close()
	}
}

// explain turns an error into a message naming the problem and the exit
// code: 3 when the cluster could not be reached or had no quorum.
func explain(err error) (string, int) {
	var gs interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &gs) {
		if errors.Is(err, context.DeadlineExceeded) {
			return "timed out: " + err.Error(), exitUnavailable
		}
		return err.Error(), exitFailed
	}
	st := gs.GRPCStatus()
	msg := st.Message()
	var ee *client.EndpointError
	if errors.As(err, &ee) {
		msg += " [" + ee.Endpoint + "]"
		if ee.Note != "" {
			msg += " (" + ee.Note + ")"
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		return "cluster unavailable (unreachable endpoint, no leader or no quorum): " + msg, exitUnavailable
	case codes.DeadlineExceeded:
		return "timed out (cluster unreachable or without quorum?): " + msg, exitUnavailable
	case codes.Unauthenticated:
		return "not authenticated (use --token or a client certificate): " + msg, exitFailed
	case codes.PermissionDenied:
		return "permission denied: " + msg, exitFailed
	case codes.Canceled:
		return "interrupted", exitFailed
	}
	return msg, exitFailed
}

func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = nil // parseCommand supplies one naming the arguments
	return fs
}

// parseGlobal parses the global flags up to the command name.
func parseGlobal(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// parseCommand parses a command's flags, which (with the global ones) may
// appear anywhere among its arguments, and checks the argument count.
func (e *env) parseCommand(fs *flag.FlagSet, args []string, minArgs, maxArgs int, argsUsage string) ([]string, error) {
	// Registering sets each flag's variable to its default: keep what
	// the global parse already set.
	saved := e.global
	e.global.register(fs, func(string) string { return "" })
	e.global = saved
	if fs.Usage == nil {
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "usage: rookeryctl %s [flags] %s\n\nflags:\n", fs.Name(), argsUsage)
			fs.PrintDefaults()
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{} // flag has printed the problem
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if err := e.global.check(); err != nil {
		return nil, err
	}
	if maxArgs == 0 && len(pos) > 0 {
		return nil, usagef("takes no arguments, got %q", pos)
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		return nil, usagef("want %s, got %d argument(s)", argsUsage, len(pos))
	}
	return pos, nil
}
