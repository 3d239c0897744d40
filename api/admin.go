package api

import (
	"context"
	"net/http"
)

// Users is the users endpoint (admin only).
type Users struct{ c *Client }

// Users returns a handle on the users endpoint.
func (c *Client) Users() *Users { return &Users{c} }

// Create creates a user.
func (u *Users) Create(ctx context.Context, user *User) (*User, error) {
	var out User
	_, err := u.c.jsonRequest(ctx, http.MethodPost, "/v1/users", nil, user, &out)
	return &out, err
}

// List lists users.
func (u *Users) List(ctx context.Context) ([]*User, error) {
	var out []*User
	_, err := u.c.get(ctx, "/v1/users", nil, &out)
	return out, err
}

// Info reads one user.
func (u *Users) Info(ctx context.Context, name string) (*User, error) {
	var out User
	_, err := u.c.get(ctx, "/v1/users/"+esc(name), nil, &out)
	return &out, err
}

// SetQuota sets how many calls the user may run at once.
func (u *Users) SetQuota(ctx context.Context, name string, quota int) (*User, error) {
	var out User
	_, err := u.c.jsonRequest(ctx, http.MethodPut, "/v1/users/"+esc(name)+"/quota", nil, &QuotaUpdate{Quota: quota}, &out)
	return &out, err
}

// Delete removes a user with its tokens.
func (u *Users) Delete(ctx context.Context, name string) error {
	_, err := u.c.jsonRequest(ctx, http.MethodDelete, "/v1/users/"+esc(name), nil, nil, nil)
	return err
}

// Tokens is the tokens endpoint.
type Tokens struct{ c *Client }

// Tokens returns a handle on the tokens endpoint.
func (c *Client) Tokens() *Tokens { return &Tokens{c} }

// Create creates a token (admin only); the answer holds its secret.
func (t *Tokens) Create(ctx context.Context, r *TokenRequest) (*Token, error) {
	var out Token
	_, err := t.c.jsonRequest(ctx, http.MethodPost, "/v1/tokens", nil, r, &out)
	return &out, err
}

// List lists tokens (admin only).
func (t *Tokens) List(ctx context.Context) ([]*Token, error) {
	var out []*Token
	_, err := t.c.get(ctx, "/v1/tokens", nil, &out)
	return out, err
}

// Self reads the caller's own token.
func (t *Tokens) Self(ctx context.Context) (*Token, error) {
	var out Token
	_, err := t.c.get(ctx, "/v1/tokens/self", nil, &out)
	return &out, err
}

// Delete revokes a token by accessor ID (admin only).
func (t *Tokens) Delete(ctx context.Context, accessor string) error {
	_, err := t.c.jsonRequest(ctx, http.MethodDelete, "/v1/tokens/"+esc(accessor), nil, nil, nil)
	return err
}

// Status is the cluster status endpoint.
type Status struct{ c *Client }

// Status returns a handle on the status endpoint.
func (c *Client) Status() *Status { return &Status{c} }

// Leader returns the Raft address of the leader.
func (s *Status) Leader(ctx context.Context) (string, error) {
	var out string
	_, err := s.c.get(ctx, "/v1/status/leader", nil, &out)
	return out, err
}

// Peers returns the Raft addresses of the voters.
func (s *Status) Peers(ctx context.Context) ([]string, error) {
	var out []string
	_, err := s.c.get(ctx, "/v1/status/peers", nil, &out)
	return out, err
}

// Health reads the agent's health.
func (s *Status) Health(ctx context.Context) (*Health, error) {
	var out Health
	_, err := s.c.get(ctx, "/v1/agent/health", nil, &out)
	return &out, err
}

// Operator is the operator endpoint.
type Operator struct{ c *Client }

// Operator returns a handle on the operator endpoint.
func (c *Client) Operator() *Operator { return &Operator{c} }

// RaftPeers lists the Raft configuration.
func (o *Operator) RaftPeers(ctx context.Context) ([]*RaftServer, error) {
	var out []*RaftServer
	_, err := o.c.get(ctx, "/v1/operator/raft/configuration", nil, &out)
	return out, err
}

// RemovePeer removes a server from the Raft configuration by ID or address.
func (o *Operator) RemovePeer(ctx context.Context, idOrAddr string) error {
	_, err := o.c.jsonRequest(ctx, http.MethodDelete, "/v1/operator/raft/peer", map[string][]string{"id": {idOrAddr}}, nil, nil)
	return err
}

// Images is the images endpoint.
type Images struct{ c *Client }

// Images returns a handle on the images endpoint.
func (c *Client) Images() *Images { return &Images{c} }

// Pull makes the executor pull an image ahead of the first call.
func (i *Images) Pull(ctx context.Context, image string) error {
	_, err := i.c.jsonRequest(ctx, http.MethodPost, "/v1/images/pull", nil, &PullRequest{Image: image}, nil)
	return err
}

// Queue lists the queued and running calls per user against their quota
// (GET /v1/queue): every user for an admin token, else the token's own.
func (s *Status) Queue(ctx context.Context, o *QueryOptions) ([]*UserQueue, *QueryMeta, error) {
	var out []*UserQueue
	meta, err := s.c.get(ctx, "/v1/queue", o, &out)
	return out, meta, err
}
