package api

import (
	"context"
	"net/http"
	"net/url"
)

// Functions is the functions endpoint.
type Functions struct{ c *Client }

// Functions returns a handle on the functions endpoint.
func (c *Client) Functions() *Functions { return &Functions{c} }

// Create creates a function; the answer carries its secret address.
func (f *Functions) Create(ctx context.Context, spec *FunctionSpec) (*Function, error) {
	var out Function
	_, err := f.c.jsonRequest(ctx, http.MethodPost, "/v1/functions", nil, spec, &out)
	return &out, err
}

// Update changes a function; with Refresh the answer carries the new address.
func (f *Functions) Update(ctx context.Context, name string, u *FunctionUpdate) (*Function, error) {
	var out Function
	_, err := f.c.jsonRequest(ctx, http.MethodPost, "/v1/functions/"+esc(name), nil, u, &out)
	return &out, err
}

// List lists the caller's functions (all of them for an admin). Filters are
// label=key=value pairs and name prefixes, as `hyper func ls -f` takes them.
func (f *Functions) List(ctx context.Context, filters url.Values, o *QueryOptions) ([]*Function, *QueryMeta, error) {
	q := queryValues(o)
	for k, vs := range filters {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	var out []*Function
	meta, err := f.c.jsonRequest(ctx, http.MethodGet, "/v1/functions", q, nil, &out)
	return out, meta, err
}

// Info reads one function.
func (f *Functions) Info(ctx context.Context, name string, o *QueryOptions) (*Function, *QueryMeta, error) {
	var out Function
	meta, err := f.c.get(ctx, "/v1/functions/"+esc(name), o, &out)
	return &out, meta, err
}

// Delete removes a function. It fails with 409 while a call of it runs.
func (f *Functions) Delete(ctx context.Context, name string) error {
	_, err := f.c.jsonRequest(ctx, http.MethodDelete, "/v1/functions/"+esc(name), nil, nil, nil)
	return err
}

// Status counts the function's calls per state.
func (f *Functions) Status(ctx context.Context, name string) (*FunctionStatus, error) {
	var out FunctionStatus
	_, err := f.c.get(ctx, "/v1/functions/"+esc(name)+"/status", nil, &out)
	return &out, err
}
