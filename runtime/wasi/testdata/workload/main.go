// Command workload is the wasm runtime's test program (GOOS=wasip1):
// its first argument says what to do. Run as "/bin/sh -c SCRIPT" it is a
// tiny shell for the scripts of the dataplanetest conformance suite.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[0] == "/bin/sh" && os.Args[1] == "-c" {
		shell(os.Args[2])
		return
	}
	if len(os.Args) < 2 {
		fmt.Println("args:", os.Args)
		return
	}
	switch os.Args[1] {
	case "exit":
		n, _ := strconv.Atoi(os.Args[2])
		os.Exit(n)
	case "env":
		fmt.Println("v=" + os.Getenv("V"))
		wd, err := os.Getwd()
		fmt.Println(wd, err)
		fmt.Fprintln(os.Stderr, "oops")
		fmt.Print("no newline")
	case "loop":
		fmt.Println("up")
		for {
			time.Sleep(50 * time.Millisecond)
		}
	case "spin":
		fmt.Println("up")
		for n := 0; ; n++ {
			if n < 0 {
				fmt.Println(n)
			}
		}
	case "alloc":
		mib, _ := strconv.Atoi(os.Args[2])
		b := make([]byte, mib<<20)
		for i := range b {
			b[i] = 1
		}
		fmt.Println("allocated", len(b)>>20)
	case "cat":
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s\n", b)
	case "write":
		if err := os.WriteFile(os.Args[2], []byte(os.Args[3]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// shell runs the subset of sh the conformance suite's scripts use:
// statements separated by ";", echo (quotes, $VAR, >&2), pwd, cat, true,
// exit N, sleep S, kill -9 $$, trap (ignored: WASI has no signals) and
// "while :; do ...; done".
func shell(script string) {
	stmts := strings.Split(script, ";")
	for i := 0; i < len(stmts); i++ {
		s := strings.TrimSpace(stmts[i])
		if s != "while :" {
			run(s)
			continue
		}
		var body []string
		for i++; i < len(stmts) && strings.TrimSpace(stmts[i]) != "done"; i++ {
			body = append(body, strings.TrimPrefix(strings.TrimSpace(stmts[i]), "do "))
		}
		for {
			for _, b := range body {
				run(b)
			}
		}
	}
}

// run runs one statement.
func run(s string) {
	out := io.Writer(os.Stdout)
	if r, ok := strings.CutSuffix(s, ">&2"); ok {
		s, out = strings.TrimSpace(r), os.Stderr
	}
	name, rest, _ := strings.Cut(s, " ")
	switch name {
	case "", "true", "trap":
	case "echo":
		fmt.Fprintln(out, words(rest))
	case "pwd":
		wd, err := os.Getwd()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintln(out, wd)
	case "cat":
		io.Copy(out, os.Stdin)
	case "exit":
		n, _ := strconv.Atoi(rest)
		os.Exit(n)
	case "sleep":
		f, _ := strconv.ParseFloat(rest, 64)
		time.Sleep(time.Duration(f * float64(time.Second)))
	case "kill":
		if rest == "-9 $$" {
			os.Exit(137) // what a shell killed by SIGKILL reports
		}
		fallthrough
	default:
		fmt.Fprintln(os.Stderr, "sh: "+name+": not supported")
		os.Exit(127)
	}
}

// words removes quotes and expands $VAR outside single quotes.
func words(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		switch s[0] {
		case '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				end = len(s) - 1
			}
			b.WriteString(s[1 : end+1])
			s = s[min(end+2, len(s)):]
		case '"':
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				end = len(s) - 1
			}
			b.WriteString(os.ExpandEnv(s[1 : end+1]))
			s = s[min(end+2, len(s)):]
		default:
			end := strings.IndexAny(s, "'\"")
			if end < 0 {
				end = len(s)
			}
			b.WriteString(os.ExpandEnv(s[:end]))
			s = s[end:]
		}
	}
	return b.String()
}
