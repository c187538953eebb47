package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests run this package's main in a child process: the test binary
// re-run with serviceArgs set, in a directory of its own (main keeps
// tokens.db in the working directory).
const serviceArgs = "TOKENS_SERVICE_TEST_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(serviceArgs); ok {
		os.Args = append([]string{"service"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func service(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), serviceArgs+"="+strings.Join(args, " "), "GORACE=atexit_sleep_ms=0")
	return cmd
}

// TestBusyPortMakesNoKey: the service binds before it creates its demo
// key, so a busy port fails at once and leaves no database behind.
func TestBusyPortMakesNoKey(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	out, err := service(t, dir, "-addr", busy.Addr().String()).CombinedOutput()
	if err == nil {
		t.Fatalf("the service started on a busy port: %s", out)
	}
	if _, err := os.Stat(dir + "/tokens.db"); !os.IsNotExist(err) {
		t.Errorf("a database was made before the port was bound (%v)", err)
	}
}

// TestDemoKeyIsMadeOnce: the first run prints a link to the port it
// listens on; the second makes no second key.
func TestDemoKeyIsMadeOnce(t *testing.T) {
	dir := t.TempDir()
	first := firstLine(t, service(t, dir, "-addr", "127.0.0.1:0"))
	if !strings.Contains(first, "send this link to its owner: http://127.0.0.1:") {
		t.Fatalf("first run printed %q", first)
	}
	second := firstLine(t, service(t, dir, "-addr", "127.0.0.1:0"))
	if !strings.Contains(second, "exists") {
		t.Fatalf("second run printed %q", second)
	}
}

// firstLine starts cmd, returns the first line it prints, and stops it
// with an interrupt, as a person would.
func firstLine(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the service's output: %v", err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the service did not stop cleanly on an interrupt: %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the service did not stop on an interrupt")
	}
	return line
}
