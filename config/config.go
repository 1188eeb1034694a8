// Package config loads the one configuration format every Rookery binary
// uses: a TOML file whose every setting can be overridden by a command-line
// flag named after its TOML path (e.g. -raft.address, -mupdate.admins).
//
// A binary declares its settings as a struct with `toml` tags and a default
// value, then calls Load. Keeping the flag names derived from the file keys
// means the file, the flags and the documentation cannot drift apart.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Duration is a time.Duration that reads "200ms" style strings from TOML
// and flags.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Load fills cfg (a pointer to a struct holding defaults) from the TOML file
// named by the -config flag (if given), then from the other flags in args.
// Unknown keys in the file are an error that names them, so a typo never
// silently falls back to a default.
func Load(name string, args []string, cfg any, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path of the TOML configuration file")
	fields, err := bindFlags(fs, reflect.ValueOf(cfg).Elem(), "")
	if err != nil {
		return err
	}
	// Parse once to find -config, then apply the file, then re-apply the
	// flags so that flags win over the file.
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (settings are flags, e.g. -raft.address=HOST:PORT)", fs.Arg(0))
	}
	if *path != "" {
		if err := decodeFile(*path, cfg); err != nil {
			return err
		}
	}
	var setErr error
	fs.Visit(func(f *flag.Flag) {
		if fv, ok := fields[f.Name]; ok && setErr == nil {
			setErr = setValue(fv, f.Value.String())
			if setErr != nil {
				setErr = fmt.Errorf("flag -%s: %w", f.Name, setErr)
			}
		}
	})
	return setErr
}

func decodeFile(path string, cfg any) error {
	md, err := toml.DecodeFile(path, cfg)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("config %s: %s", path, perr.ErrorWithPosition())
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("config %s: unknown setting(s): %s", path, strings.Join(keys, ", "))
	}
	return nil
}

// bindFlags registers one flag per leaf field. Flags are parsed into
// throw-away values and copied into the struct after the file is applied.
func bindFlags(fs *flag.FlagSet, v reflect.Value, prefix string) (map[string]reflect.Value, error) {
	out := map[string]reflect.Value{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := strings.Split(sf.Tag.Get("toml"), ",")[0]
		if key == "" || key == "-" || !sf.IsExported() {
			continue
		}
		name := key
		if prefix != "" {
			name = prefix + "." + key
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(Duration(0)) {
			sub, err := bindFlags(fs, fv, name)
			if err != nil {
				return nil, err
			}
			for k, s := range sub {
				out[k] = s
			}
			continue
		}
		if !settable(fv) {
			continue // e.g. tables of peers: file only
		}
		fs.Var(&rawFlag{val: formatValue(fv), isBool: fv.Kind() == reflect.Bool}, name, sf.Tag.Get("help"))
		out[name] = fv
	}
	return out, nil
}

func settable(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Uint64, reflect.Uint32, reflect.Uint, reflect.Float64:
		return true
	case reflect.Slice:
		return v.Type().Elem().Kind() == reflect.String
	}
	return false
}

func formatValue(v reflect.Value) string {
	if d, ok := v.Interface().(Duration); ok {
		return d.Std().String()
	}
	if v.Kind() == reflect.Slice {
		return strings.Join(v.Interface().([]string), ",")
	}
	return fmt.Sprint(v.Interface())
}

func setValue(v reflect.Value, s string) error {
	if _, ok := v.Interface().(Duration); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetUint(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

// rawFlag holds a flag's text until Load copies it into the struct; bool
// settings accept the bare form (-raft.bootstrap).
type rawFlag struct {
	val    string
	isBool bool
}

func (f *rawFlag) String() string     { return f.val }
func (f *rawFlag) Set(s string) error { f.val = s; return nil }
func (f *rawFlag) IsBoolFlag() bool   { return f.isBool }
