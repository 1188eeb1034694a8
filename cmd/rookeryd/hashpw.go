package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/rookery/rookery/auth"
)

// hashPassword reads one password line from stdin and prints its bcrypt
// hash, the form auth.users_file holds ("name:" + hash). The password never
// appears on the command line, where ps would show it.
func hashPassword(stdin io.Reader, stdout, stderr io.Writer) int {
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "rookeryd hash-password: reading stdin: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "rookeryd hash-password: empty password on stdin")
		return 2
	}
	h, err := auth.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "rookeryd hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}
