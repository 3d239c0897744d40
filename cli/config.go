package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hyperfunc/hyperfunc/api"
)

// fileConfig is the CLI config file: $HYPER_CONFIG, or ~/.hyper/config.json.
type fileConfig struct {
	Address string `json:"address"`
	Token   string `json:"token"`
}

// configPath returns the config file to read and whether the user named it
// explicitly (then it must exist).
func (a *app) configPath() (string, bool) {
	if p := a.env("HYPER_CONFIG"); p != "" {
		return p, true
	}
	if home := a.env("HOME"); home != "" {
		return filepath.Join(home, ".hyper", "config.json"), false
	}
	return "", false
}

func (a *app) readConfigFile() (*fileConfig, error) {
	path, explicit := a.configPath()
	if path == "" {
		return &fileConfig{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return &fileConfig{}, nil
		}
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	var c fileConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return &c, nil
}

// resolveConfig applies the precedence flag > environment > config file >
// default to the address and the token.
func (a *app) resolveConfig() (*api.Config, error) {
	c := &api.Config{Address: a.addrFlag, Token: a.tokenFlag}
	if c.Address == "" {
		c.Address = a.env("HYPER_ADDR")
	}
	if c.Token == "" {
		c.Token = a.env("HYPER_TOKEN")
	}
	if c.Address == "" || c.Token == "" {
		fc, err := a.readConfigFile()
		if err != nil {
			return nil, err
		}
		if c.Address == "" {
			c.Address = fc.Address
		}
		if c.Token == "" {
			c.Token = fc.Token
		}
	}
	if c.Address == "" {
		c.Address = api.DefaultAddress
	}
	return c, nil
}

// api returns the client, built on first use.
func (a *app) api() (*api.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	cfg, err := a.resolveConfig()
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	a.client = c
	return c, nil
}

// address is the agent address for messages, or the default.
func (a *app) address() string {
	if a.client != nil {
		return a.client.Address()
	}
	return api.DefaultAddress
}
