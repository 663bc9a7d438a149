package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDataLock(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDataDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockDataDir(dir, "stop it or use another --data")
	var inUse *dataInUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second lock: err = %v; want a dataInUseError naming pid %d", err, os.Getpid())
	}
	want := fmt.Sprintf("data folder %s is in use by another sallyport (pid %d); stop it or use another --data", dir, os.Getpid())
	if err.Error() != want {
		t.Errorf("got %q; want %q", err, want)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := lockDataDir(dir, "")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Close()
}

// TestMain lets TestDataLockCrash run the test binary as another process
// holding a data folder's lock: with SALLYPORT_TEST_HOLD_LOCK set, it
// takes the lock of that folder, says so and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SALLYPORT_TEST_HOLD_LOCK"); dir != "" {
		if _, err := lockDataDir(dir, ""); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDataLockCrash checks that the lock names the process holding it and
// does not outlive it: after a crash (SIGKILL) the folder can be used at
// once.
func TestDataLockCrash(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SALLYPORT_TEST_HOLD_LOCK="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("the holder said %q", line)
	}
	_, err = lockDataDir(dir, "")
	var inUse *dataInUseError
	if !errors.As(err, &inUse) || inUse.PID != cmd.Process.Pid {
		t.Fatalf("err = %v; want the data folder in use by pid %d", err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := lockDataDir(dir, "")
	if err != nil {
		t.Fatalf("after the holder crashed: %v", err)
	}
	l.Close()
}

// TestDataInUse checks that dev and serve refuse at once a data folder
// another sallyport runs on, before changing anything in it, and that the
// commands that only read it, or that are meant to run beside the server,
// are not blocked.
func TestDataInUse(t *testing.T) {
	cfg := serveSetup(t, nil, freeAddr(t), "")
	data := filepath.Join(filepath.Dir(cfg), "data")
	policy := filepath.Join(data, "policy.yaml")
	if err := os.WriteFile(policy, []byte("# the first dev's policy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := lockDataDir(data, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := snapshot(t, data)
	want := fmt.Sprintf("data folder %s is in use by another sallyport (pid %d)", data, os.Getpid())
	for _, args := range [][]string{
		{"dev", "--listen", "127.0.0.1:0", "--bastion", "127.0.0.1:0", "--data", data},
		{"serve", "--config", cfg},
	} {
		t.Run("fail/"+args[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := run(ctx, args, new(strings.Builder), new(strings.Builder))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v; want %q", err, want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refused after %v; want at once", d)
			}
			after := snapshot(t, data)
			for path, content := range before {
				if strings.HasSuffix(path, ".db") || strings.HasSuffix(path, "-wal") || strings.HasSuffix(path, "-shm") {
					continue
				}
				if after[path] != content {
					t.Errorf("%s changed", path)
				}
			}
			if len(after) != len(before) {
				t.Errorf("%d files before, %d after", len(before), len(after))
			}
		})
	}
	for _, args := range [][]string{
		{"serve", "--config", cfg, "--check"},
		{"recordings", "list", "--data", data},
		{"ca", "krl", "--data", data, "--out", filepath.Join(t.TempDir(), "krl")},
	} {
		t.Run("ok/"+strings.Join(args[:2], "-"), func(t *testing.T) {
			if _, errOut, err := tryCLI(t, args...); err != nil {
				t.Errorf("%v: %v\n%s", args, err, errOut)
			}
		})
	}
}

// TestDevTemporaryFolder checks that dev without --data still starts (and
// locks its temporary folder), and removes the folder when it stops.
func TestDevTemporaryFolder(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout := new(lockedBuffer)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--bastion", "127.0.0.1:0"}, stdout, new(lockedBuffer))
	}()
	folder := regexp.MustCompile(`data folder: +(\S+) \(temporary`)
	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m == nil {
		select {
		case err := <-done:
			t.Fatalf("dev exited: %v\n%s", err, stdout.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev printed no temporary data folder within 30s:\n%s", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
		m = folder.FindStringSubmatch(stdout.String())
	}
	// flock conflicts between two opens of the file even in one process.
	var inUse *dataInUseError
	if l, err := lockDataDir(m[1], ""); err == nil {
		l.Close()
		t.Errorf("the temporary folder is not locked")
	} else if !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Errorf("locking the temporary folder again: %v; want in use by pid %d", err, os.Getpid())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dev: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop within 30s")
	}
	if _, err := os.Stat(m[1]); err == nil {
		t.Errorf("the temporary folder %s was left behind", m[1])
	}
}
