package deploy

import (
	"fmt"
	"strings"
)

// promqlKeywords are identifiers that are not metric names: operators,
// modifiers, and aggregations (which may be followed by a by/without
// clause rather than "(").
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// labelListKeywords take a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// MetricNames returns the metric names a PromQL expression selects. It is
// a small tokenizer, not a full parser: it skips strings, label matchers
// ({...}), ranges ([...]), numbers and label lists of by/without/on/
// ignoring/group_left/group_right, treats an identifier followed by "(" as
// a function or aggregation, and checks that brackets balance.
func MetricNames(expr string) ([]string, error) {
	var names []string
	var stack []byte
	closing := map[byte]byte{')': '(', ']': '[', '}': '{'}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end := strings.IndexByte(expr[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i += end + 2
		case c == '{' || c == '[':
			// Label matchers and ranges name no metric: skip to the close.
			want := byte('}')
			if c == '[' {
				want = ']'
			}
			j := i + 1
			for j < len(expr) && expr[j] != want {
				if q := expr[j]; q == '"' || q == '\'' || q == '`' {
					end := strings.IndexByte(expr[j+1:], q)
					if end < 0 {
						return nil, fmt.Errorf("unterminated string at %d", j)
					}
					j += end + 1
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unclosed %q at %d", c, i)
			}
			i = j + 1
		case c == '(':
			stack = append(stack, c)
			i++
		case c == ')' || c == ']' || c == '}':
			if len(stack) == 0 || stack[len(stack)-1] != closing[c] {
				return nil, fmt.Errorf("unbalanced %q at %d", c, i)
			}
			stack = stack[:len(stack)-1]
			i++
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.' || expr[i] == '+' && (expr[i-1] == 'e' || expr[i-1] == 'E')) {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && strings.IndexByte(" \t\n", expr[k]) >= 0 {
				k++
			}
			next := byte(0)
			if k < len(expr) {
				next = expr[k]
			}
			switch {
			case labelListKeywords[strings.ToLower(word)] && next == '(':
				end := strings.IndexByte(expr[k:], ')')
				if end < 0 {
					return nil, fmt.Errorf("unclosed label list after %s", word)
				}
				j = k + end + 1
			case promqlKeywords[strings.ToLower(word)], next == '(':
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	if len(stack) != 0 {
		return nil, fmt.Errorf("%d unclosed parentheses", len(stack))
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no metric selected")
	}
	return names, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
