package shares

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// mkdirAllSync creates dir and any missing parents, syncing the parent of
// each directory it creates so that the new entries are durable.
func mkdirAllSync(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: fs.ErrExist}
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// removeEmptyDirs removes the share's storage index directory and its
// prefix directory below base if they are empty; errors are ignored (a
// directory that is not empty stays).
func removeEmptyDirs(base string, k key) {
	siDir := filepath.Dir(filepath.Join(base, k.relPath()))
	if os.Remove(siDir) == nil {
		os.Remove(filepath.Dir(siDir))
	}
}
