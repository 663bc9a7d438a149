package backup

import (
	"context"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/store"
)

func openStore(ctx context.Context, dataDir string) (*store.SQLite, error) {
	return store.Open(ctx, filepath.Join(dataDir, databaseFile), store.Options{})
}

func sshFingerprint(s ssh.Signer) string { return ssh.FingerprintSHA256(s.PublicKey()) }
