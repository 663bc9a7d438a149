package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/trace"
	"testing"

	"github.com/sallyport/sallyport/bastion"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/store"
)

// serveConfig is what the benchmark hands the bastion process it starts.
type serveConfig struct {
	Data       string                    // CA keys, store and recordings
	Policy     string                    // policy file
	Identities map[int64]policy.Identity // the directory
	Record     bool                      // false: a recorder that keeps nothing
	Trace      string                    // write a Go execution trace here
}

var serve = flag.String("bastion.serve", "", "run a bastion from this JSON `config` file and print its address (used by the benchmark to start itself as a separate process)")

func TestMain(m *testing.M) {
	flag.Parse()
	if *serve != "" {
		if err := runServe(*serve); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type staticDirectory map[int64]policy.Identity

func (d staticDirectory) Identity(id int64) (policy.Identity, bool) {
	who, ok := d[id]
	return who, ok
}

// runServe runs a bastion until its stdin closes.
func runServe(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg serveConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	if cfg.Trace != "" {
		f, err := os.Create(cfg.Trace)
		if err != nil {
			return err
		}
		if err := trace.Start(f); err != nil {
			return err
		}
		defer func() { trace.Stop(); f.Close() }()
	}
	ctx := context.Background()
	keys, err := ca.LoadKeys(cfg.Data)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, filepath.Join(cfg.Data, "sallyport.db"), store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	auth, err := ca.New(keys, st)
	if err != nil {
		return err
	}
	pb, err := os.ReadFile(cfg.Policy)
	if err != nil {
		return err
	}
	pol, err := policy.Parse(cfg.Policy, pb)
	if err != nil {
		return err
	}
	var rec bastion.Recorder = discardRecorder{}
	if cfg.Record {
		r, err := recording.New(recording.Options{Dir: filepath.Join(cfg.Data, "recordings"), Index: st, Signer: keys.Session})
		if err != nil {
			return err
		}
		rec = bastion.NewRecorder(r)
	}
	hostKey, err := ca.LoadSigner(filepath.Join(cfg.Data, "bastion_host_key"))
	if err != nil {
		return err
	}
	srv := &bastion.Server{
		Authority: auth, HostKey: hostKey, HostNames: []string{"127.0.0.1"},
		Policy: func() *policy.Policy { return pol }, Directory: staticDirectory(cfg.Identities),
		Store: st, Recorder: rec,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxSessionsPerUser: 2000, MaxConnections: 2000, MaxConnectionsPerUser: 2000,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(l.Addr().String())
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		srv.Close()
		close(closed)
	}()
	if err := srv.Serve(l); err != bastion.ErrServerClosed {
		return err
	}
	<-closed // Close waits for the sessions to finish their audit records
	return nil
}

// discardRecorder records nothing: the "recording off" baseline.
type discardRecorder struct{}

func (discardRecorder) Start(context.Context, recording.Meta) (bastion.Recording, error) {
	return discardRecording{done: make(chan struct{})}, nil
}

type discardRecording struct{ done chan struct{} }

func (discardRecording) ID() string                { return "none" }
func (discardRecording) Stdout() io.Writer         { return io.Discard }
func (discardRecording) Stderr() io.Writer         { return io.Discard }
func (discardRecording) Stdin() io.Writer          { return io.Discard }
func (discardRecording) Resize(int, int) error     { return nil }
func (d discardRecording) Failed() <-chan struct{} { return d.done }
func (discardRecording) Err() error                { return nil }
func (discardRecording) Close(context.Context, recording.End) (recording.Summary, error) {
	return recording.Summary{}, nil
}
