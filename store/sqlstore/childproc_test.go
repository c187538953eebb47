package sqlstore_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// childProcess is the test binary run again as a child process, running
// one test of this package whose environment tells it what to do: the
// processes of the cross-process tests (revocation, audit).
type childProcess struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser // closing it tells the child to stop
	exited  chan struct{}  // closed when it exited; waitErr is then set
	waitErr error

	mu  sync.Mutex
	out strings.Builder // stdout and stderr, for failure messages
}

// startChild runs test in a child process with env added to this one's,
// and passes each line the child prints to onLine, on one goroutine, all
// before exited is closed. A line onLine does not keep goes to output()
// too. The child is stopped when t ends.
func startChild(t *testing.T, test string, env []string, onLine func(line string) (kept bool)) *childProcess {
	t.Helper()
	c := &childProcess{exited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=2m")
	// A race-enabled child would sleep a second on exit by default.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	c.cmd.Env = append(append(os.Environ(), env...), "GORACE="+gorace)
	c.cmd.Stderr = writerFunc(c.record)
	stdout, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	c.stdin, err = c.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, c.cmd.Start())
	t.Cleanup(func() {
		c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(interruptWait):
			c.cmd.Process.Kill()
			<-c.exited
		}
	})
	go func() {
		scanner := bufio.NewScanner(stdout)
		scanner.Buffer(make([]byte, 64<<10), 1<<20)
		for scanner.Scan() {
			if line := scanner.Text(); !onLine(line) {
				c.record([]byte(line + "\n"))
			}
		}
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	return c
}

func (c *childProcess) record(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *childProcess) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
