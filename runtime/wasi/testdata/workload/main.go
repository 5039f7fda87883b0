// Command workload is the wasm runtime's test program (GOOS=wasip1):
// its first argument says what to do.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
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
