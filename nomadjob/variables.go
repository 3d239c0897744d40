package nomadjob

import (
	"context"
	"errors"
	"strings"

	nomad "github.com/hashicorp/nomad/api"
)

// Nomad variables, as the warm sandboxes use them (warm*.go): the variable
// nomad/jobs/<warm child> is both the claim (written once, check-and-set
// 0) and the envelope's delivery (the child's template renders it).
// Measured on Nomad 1.6.5: a conflicting write answers 409 with the
// existing variable as its body, a missing one 404 "variable not found",
// a delete 204 (also of a missing path), more than 64 KiB of items 500
// "variables are limited to 64KiB in total size".

// VarState is a variable's items and the index its next check-and-set
// names.
type VarState struct {
	Items       map[string]string
	ModifyIndex uint64
}

func varState(v *nomad.Variable) VarState {
	if v == nil {
		return VarState{}
	}
	return VarState{Items: v.Items, ModifyIndex: v.ModifyIndex}
}

func (n *apiNomad) CreateVariable(ctx context.Context, path string, items map[string]string) (VarState, bool, error) {
	v, _, err := n.c.Variables().CheckedCreate(&nomad.Variable{Path: path, Items: items}, wo(ctx))
	return casAnswer(v, err, "create variable "+path)
}

func (n *apiNomad) UpdateVariable(ctx context.Context, path string, items map[string]string, index uint64) (VarState, bool, error) {
	v, _, err := n.c.Variables().CheckedUpdate(&nomad.Variable{Path: path, Items: items, ModifyIndex: index}, wo(ctx))
	return casAnswer(v, err, "update variable "+path)
}

// casAnswer reads a check-and-set write's answer: written (the variable
// now), or a conflict (the variable there, nothing written), or an error.
func casAnswer(v *nomad.Variable, err error, op string) (VarState, bool, error) {
	var conflict nomad.ErrCASConflict
	if errors.As(err, &conflict) {
		return varState(conflict.Conflict), false, nil
	}
	if err != nil {
		return VarState{}, false, classify(op, err)
	}
	return varState(v), true, nil
}

func (n *apiNomad) ReadVariable(ctx context.Context, path string) (map[string]string, error) {
	v, _, err := n.c.Variables().Read(path, qo(ctx))
	if errors.Is(err, nomad.ErrVariablePathNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, classify("read variable "+path, err)
	}
	if v == nil {
		return nil, nil
	}
	if v.Items == nil {
		return map[string]string{}, nil
	}
	return v.Items, nil
}

func (n *apiNomad) DeleteVariable(ctx context.Context, path string) error {
	_, err := n.c.Variables().Delete(path, wo(ctx))
	return classify("delete variable "+path, err)
}

func (n *apiNomad) ListVariables(ctx context.Context, prefix string) ([]string, error) {
	vs, _, err := n.c.Variables().PrefixList(prefix, qo(ctx))
	if err != nil {
		return nil, classify("list variables "+prefix, err)
	}
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.Path)
	}
	return out, nil
}

func (n *apiNomad) ApplyJobPolicy(ctx context.Context, name, namespace, jobID, rules string) error {
	p := &nomad.ACLPolicy{Name: name, Rules: rules, JobACL: &nomad.JobACL{Namespace: namespace, JobID: jobID},
		Description: "hyperfunc: warm sandboxes read their own variable (nomad/jobs/<child>)"}
	_, err := n.c.ACLPolicies().Upsert(p, wo(ctx))
	return classify("apply ACL policy "+name, err)
}

func (n *apiNomad) DeletePolicy(ctx context.Context, name string) error {
	_, err := n.c.ACLPolicies().Delete(name, wo(ctx))
	return classify("delete ACL policy "+name, err)
}

// IsACLDisabled: Nomad runs without ACLs (400 "ACL support disabled",
// Nomad 1.6.5's answer to any ACL endpoint then).
func IsACLDisabled(err error) bool {
	var e *Error
	return errors.As(err, &e) && strings.Contains(strings.ToLower(e.Body), "acl support disabled")
}
