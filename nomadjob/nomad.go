package nomadjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// Nomad is the part of the Nomad HTTP API the executor uses. It is narrow on
// purpose: apiNomad implements it over github.com/hashicorp/nomad/api, and
// tests can swap it. Every method takes a context so that a stopped executor
// never leaves a request behind.
type Nomad interface {
	RegisterJob(ctx context.Context, job *nomad.Job) error
	DeregisterJob(ctx context.Context, jobID string, purge bool) error
	// Dispatch dispatches a parameterized job; token is the idempotency token.
	Dispatch(ctx context.Context, jobID string, meta map[string]string, payload []byte, token string) (string, error)
	JobInfo(ctx context.Context, jobID string) (*nomad.Job, error)
	ListJobs(ctx context.Context, prefix string) ([]*nomad.JobListStub, error)
	// JobAllocations is a blocking query when waitIndex > 0; it returns the
	// allocations and the index to wait on next (X-Nomad-Index).
	JobAllocations(ctx context.Context, jobID string, waitIndex uint64, wait time.Duration) ([]*nomad.AllocationListStub, uint64, error)
	Allocation(ctx context.Context, allocID string) (*nomad.Allocation, error)
	Stat(ctx context.Context, allocID, path string) (*nomad.AllocFileInfo, error)
	// List lists a directory of the allocation (fs/ls): the only fs
	// endpoint that shows a symbolic link as one (FileMode "L...").
	List(ctx context.Context, allocID, path string) ([]*nomad.AllocFileInfo, error)
	// Cat reads at most limit bytes of a file in the allocation directory.
	Cat(ctx context.Context, allocID, path string, limit int64) ([]byte, error)
	// Logs reads at most limit bytes of a task's stdout or stderr (plain).
	Logs(ctx context.Context, allocID, task, logType string, limit int64) ([]byte, error)
	// EventStream subscribes to the Allocation topic from index on.
	EventStream(ctx context.Context, index uint64) (<-chan *nomad.Events, error)
	Leader(ctx context.Context) (string, error)

	// CreateVariable writes the variable at path only if none exists
	// (check-and-set index 0). created false: one existed; it comes back
	// and nothing was written. created true: the new one comes back.
	CreateVariable(ctx context.Context, path string, items map[string]string) (cur VarState, created bool, err error)
	// UpdateVariable replaces the variable at path only if its
	// ModifyIndex is still index. updated false: it had changed (or is
	// gone); what is there now comes back (zero VarState: nothing).
	UpdateVariable(ctx context.Context, path string, items map[string]string, index uint64) (cur VarState, updated bool, err error)
	// ReadVariable returns the items of the variable at path; nil, nil when
	// there is none.
	ReadVariable(ctx context.Context, path string) (map[string]string, error)
	// DeleteVariable removes the variable at path (none: no error).
	DeleteVariable(ctx context.Context, path string) error
	// ListVariables returns the paths of the variables under prefix.
	ListVariables(ctx context.Context, prefix string) ([]string, error)
	// ApplyJobPolicy writes the ACL policy name with rules, attached to the
	// job jobID of namespace (its workload identity gets it). A Nomad
	// without ACLs answers 400 "ACL support disabled" (IsACLDisabled).
	ApplyJobPolicy(ctx context.Context, name, namespace, jobID, rules string) error
	// DeletePolicy removes the ACL policy name.
	DeletePolicy(ctx context.Context, name string) error
}

// apiNomad implements Nomad with the official client.
type apiNomad struct {
	c *nomad.Client
}

var _ Nomad = (*apiNomad)(nil)

// NewNomad returns the Nomad implementation over the official client.
func NewNomad(c *nomad.Client) Nomad { return &apiNomad{c: c} }

func qo(ctx context.Context) *nomad.QueryOptions { return (&nomad.QueryOptions{}).WithContext(ctx) }
func wo(ctx context.Context) *nomad.WriteOptions { return (&nomad.WriteOptions{}).WithContext(ctx) }

func (n *apiNomad) RegisterJob(ctx context.Context, job *nomad.Job) error {
	_, _, err := n.c.Jobs().Register(job, wo(ctx))
	return classify("register job "+deref(job.ID), err)
}

func (n *apiNomad) DeregisterJob(ctx context.Context, jobID string, purge bool) error {
	_, _, err := n.c.Jobs().Deregister(jobID, purge, wo(ctx))
	return classify("deregister job "+jobID, err)
}

func (n *apiNomad) Dispatch(ctx context.Context, jobID string, meta map[string]string, payload []byte, token string) (string, error) {
	q := &nomad.WriteOptions{IdempotencyToken: token}
	resp, _, err := n.c.Jobs().Dispatch(jobID, meta, payload, "", q.WithContext(ctx))
	if err != nil {
		return "", classify("dispatch job "+jobID, err)
	}
	return resp.DispatchedJobID, nil
}

func (n *apiNomad) JobInfo(ctx context.Context, jobID string) (*nomad.Job, error) {
	j, _, err := n.c.Jobs().Info(jobID, qo(ctx))
	return j, classify("read job "+jobID, err)
}

func (n *apiNomad) ListJobs(ctx context.Context, prefix string) ([]*nomad.JobListStub, error) {
	// meta=true (Nomad 1.6): each stub carries the job's meta, so that a
	// call's children are told apart without reading every job.
	q := &nomad.QueryOptions{Prefix: prefix, Params: map[string]string{"meta": "true"}}
	js, _, err := n.c.Jobs().List(q.WithContext(ctx))
	return js, classify("list jobs "+prefix, err)
}

func (n *apiNomad) JobAllocations(ctx context.Context, jobID string, waitIndex uint64, wait time.Duration) ([]*nomad.AllocationListStub, uint64, error) {
	q := &nomad.QueryOptions{WaitIndex: waitIndex, WaitTime: wait}
	as, qm, err := n.c.Jobs().Allocations(jobID, false, q.WithContext(ctx))
	if err != nil {
		return nil, 0, classify("allocations of "+jobID, err)
	}
	return as, qm.LastIndex, nil
}

func (n *apiNomad) Allocation(ctx context.Context, allocID string) (*nomad.Allocation, error) {
	a, _, err := n.c.Allocations().Info(allocID, qo(ctx))
	return a, classify("read allocation "+allocID, err)
}

// The client fs endpoints are asked of the servers, which forward to the
// node: frontends need not reach Nomad clients directly (nomad/api's AllocFS
// would first try the node's own address).

func (n *apiNomad) Stat(ctx context.Context, allocID, path string) (*nomad.AllocFileInfo, error) {
	var fi nomad.AllocFileInfo
	_, err := n.c.Raw().Query("/v1/client/fs/stat/"+url.PathEscape(allocID)+"?path="+url.QueryEscape(path), &fi, qo(ctx))
	if err != nil {
		return nil, classify("stat "+path+" of allocation "+allocID, err)
	}
	return &fi, nil
}

// MaxListing bounds the fs/ls answer List reads, in bytes (~300 bytes an
// entry): the task writes the directories listed, and could fill them
// with enough names to make each collection decode hundreds of MiB.
const MaxListing = 1 << 20

// ErrListingTooLarge: a directory listing past MaxListing.
var ErrListingTooLarge = errors.New("directory listing too large")

func (n *apiNomad) List(ctx context.Context, allocID, path string) ([]*nomad.AllocFileInfo, error) {
	r, err := n.c.Raw().Response("/v1/client/fs/ls/"+url.PathEscape(allocID)+"?path="+url.QueryEscape(path), qo(ctx))
	if err != nil {
		return nil, classify("list "+path+" of allocation "+allocID, err)
	}
	b, err := readLimited(r, MaxListing)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxListing {
		return nil, fmt.Errorf("%w: %s of allocation %s is past %d bytes", ErrListingTooLarge, path, allocID, MaxListing)
	}
	var out []*nomad.AllocFileInfo
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("list %s of allocation %s: %w", path, allocID, err)
	}
	return out, nil
}

func (n *apiNomad) Cat(ctx context.Context, allocID, path string, limit int64) ([]byte, error) {
	r, err := n.c.Raw().Response("/v1/client/fs/cat/"+url.PathEscape(allocID)+"?path="+url.QueryEscape(path), qo(ctx))
	if err != nil {
		return nil, classify("read "+path+" of allocation "+allocID, err)
	}
	return readLimited(r, limit)
}

func (n *apiNomad) Logs(ctx context.Context, allocID, task, logType string, limit int64) ([]byte, error) {
	v := url.Values{}
	v.Set("task", task)
	v.Set("type", logType)
	v.Set("origin", "start")
	v.Set("offset", "0")
	v.Set("plain", "true")
	r, err := n.c.Raw().Response("/v1/client/fs/logs/"+url.PathEscape(allocID)+"?"+v.Encode(), qo(ctx))
	if err != nil {
		return nil, classify(logType+" log of allocation "+allocID, err)
	}
	return readLimited(r, limit)
}

func (n *apiNomad) EventStream(ctx context.Context, index uint64) (<-chan *nomad.Events, error) {
	topics := map[nomad.Topic][]string{nomad.TopicAllocation: nil}
	ch, err := n.c.EventStream().Stream(ctx, topics, index, &nomad.QueryOptions{})
	return ch, classify("event stream", err)
}

func (n *apiNomad) Leader(ctx context.Context) (string, error) {
	var leader string
	_, err := n.c.Raw().Query("/v1/status/leader", &leader, qo(ctx))
	return leader, classify("leader", err)
}

// readLimited reads at most limit bytes (limit+1 to let the caller see that
// there was more) and closes r.
func readLimited(r io.ReadCloser, limit int64) ([]byte, error) {
	defer r.Close()
	if limit < 0 {
		limit = 0
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return b, fmt.Errorf("%w: reading body: %w", ErrUnavailable, err)
	}
	return b, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptr[T any](v T) *T { return &v }

func itoa(i int) string { return strconv.Itoa(i) }
