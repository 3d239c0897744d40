package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteResult writes dir/result.json atomically: a temp file in the same
// directory, fsync, rename. A reader that sees result.json sees all of it,
// and the stdout file, written and synced before, is complete; WriteResult
// creates an empty one when the command never ran.
func WriteResult(dir string, res *Result) error {
	// O_EXCL|O_NOFOLLOW: whatever the command left at that name (a link,
	// a FIFO) is neither followed nor opened; the reader judges it.
	out, err := os.OpenFile(filepath.Join(dir, StdoutFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	switch {
	case err == nil:
		if err := out.Close(); err != nil {
			return fmt.Errorf("writing result: %w", err)
		}
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("writing result: %w", err)
	}
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encoding result: %w", err)
	}
	f, err := os.CreateTemp(dir, ".result-*.json")
	if err != nil {
		return fmt.Errorf("writing result: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, ResultFile))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing result: %w", err)
	}
	return nil
}

// ReadResult reads dir/result.json.
func ReadResult(dir string) (*Result, error) {
	data, err := os.ReadFile(filepath.Join(dir, ResultFile))
	if err != nil {
		return nil, err
	}
	var res Result
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", ResultFile, err)
	}
	return &res, nil
}
