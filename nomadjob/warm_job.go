package nomadjob

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
)

// Names of the warm sandboxes (warm.go).
const (
	// WarmSuffix ends the ID of a function's warm job, whose children are
	// the pre-started sandboxes. A cold job's ID ends with its function's
	// name (letters, digits, dashes) or a hash, never with "_": with
	// "-warm", a function named x-warm had its cold children taken for
	// x's sandboxes (stopped at a take-over, lost at Reconcile, run twice
	// after CleanOrphans) and its job overwrote x's warm job.
	WarmSuffix = "_warm"
	// MetaWarm is the dispatch meta of a warm child: its sandbox ID. A
	// warm child carries no call: the call it takes is in its variable.
	MetaWarm = "hf_warm"
	// MetaSpec is the warm job's meta (children inherit it): the hash of
	// the function version its task runs (SpecHash).
	MetaSpec = "hf_spec"
	// WarmEnvelopePath is where the child's template renders its variable's
	// envelope item; empty until the call is handed over.
	WarmEnvelopePath = "/local/envelope.json"
	// WarmReadyPath is the file the shim creates once its SIGUSR1 handler
	// is set (in the task, and as the fs endpoints name it): no call is
	// handed to a sandbox before.
	WarmReadyPath   = "/alloc/data/.hf-ready"
	warmReadyFSPath = "alloc/data/.hf-ready"
	// Items of a warm child's variable.
	ItemEnvelope = "envelope"
	ItemCallID   = "call_id"
	// MaxWarmEnvelope bounds the envelope a variable carries (Nomad takes
	// at most 64 KiB of items; the JSON of the items escapes the
	// envelope's quotes). Larger calls start cold.
	MaxWarmEnvelope = 32 << 10
	// warmStderrPreview is the stderr kept by the shim in alloc/data, so
	// a warm call is collected without reading the task's logs.
	warmStderrPreview = executor.StderrPreviewBytes
)

// warmTemplate renders the envelope item of the variable named after the
// child's own job ID. It lists before it reads: nomadVar of a missing
// variable would hold the task's start until it exists, nomadVarList
// renders an empty file at once and again when the variable is created.
// The path comes from NOMAD_JOB_ID, which Nomad sets; no tenant value is
// in the template or the task's env.
const warmTemplate = `{{- $p := printf "nomad/jobs/%s" (env "NOMAD_JOB_ID") -}}
{{- range nomadVarList $p -}}{{- if eq .Path $p -}}{{- with nomadVar .Path -}}{{ .envelope }}{{- end -}}{{- end -}}{{- end -}}`

// WarmJobID is the parameterized job whose children are fn's warm
// sandboxes.
func WarmJobID(clusterID string, fn executor.Function) string {
	return JobID(clusterID, fn) + WarmSuffix
}

// WarmVariablePath is the variable that claims a warm child and carries
// its envelope: nomad/jobs/<child job ID>.
func WarmVariablePath(child string) string { return "nomad/jobs/" + child }

// WarmPolicyName is the ACL policy attached to fn's warm job: 16 hex of
// the job ID's sha256 (policy names take no "_").
func WarmPolicyName(clusterID string, fn executor.Function) string {
	sum := sha256.Sum256([]byte(WarmJobID(clusterID, fn)))
	return "hf-warm-" + hex.EncodeToString(sum[:8])
}

// warmPolicyRules lets the warm job's children read and list the
// variables under nomad/jobs/<warm job>/. Nomad gives a dispatched child
// the workload identity of its parent job (claims name the parent), whose
// implicit access is only nomad/jobs/<parent>[/<group>[/<task>]]: without
// this policy, on a cluster with ACLs the template lists nothing and the
// envelope never arrives (checked on Nomad 1.6.5 with ACLs on). Every
// child of one warm job could thus read its siblings' variables, but only
// the template reads them, and the template names its own child (the job
// ID Nomad sets); the task gets no Nomad token and has no network.
func warmPolicyRules(namespace, warmJobID string) string {
	return fmt.Sprintf(`namespace %q {
  variables {
    path %q {
      capabilities = ["read", "list"]
    }
  }
}
`, namespace, "nomad/jobs/"+warmJobID+"/*")
}

// maxVariablePath is Nomad's bound on a variable path (longer: 500
// "invalid path", checked on Nomad 1.6.5).
const maxVariablePath = 128

// warmable: the variables of fn's warm children fit Nomad's path bound
// (a child ID is its parent's plus "/dispatch-<10 digits>-<8 hex>").
func warmable(clusterID string, fn executor.Function) bool {
	return len(WarmVariablePath(WarmJobID(clusterID, fn)+"/dispatch-1796050718-883ebb8d")) <= maxVariablePath
}

// isWarmChild: a child of a warm job (its ID is <parent>/dispatch-...).
func isWarmChild(child string) bool {
	parent, _, ok := strings.Cut(child, "/dispatch-")
	return ok && strings.HasSuffix(parent, WarmSuffix)
}

// SpecHash names a function version: 12 hex digits of the sha256 of the
// whole executor.Function. A sandbox takes only calls of its own version.
func SpecHash(fn executor.Function) string {
	b, _ := json.Marshal(fn) // a plain struct: never fails
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// sealedSpec ends the pool version (MetaSpec) of a sandbox built sealed
// (sealAs): its shim runs as root and the command as another uid.
const sealedSpec = "+sealed"

// warmSpec is the version of fn's sandboxes as this executor builds them:
// SpecHash, and sealedSpec when they are sealed. A sandbox's seal is
// trusted only when it was built sealed, which its own job's meta says
// (written by the executor, out of the function's reach): one built by an
// executor with NoSeal, or by a version without seals, runs the command
// as the shim's own uid, which can forge the seal through /proc/1/fd/1.
// Keyed by it, such a sandbox is never adopted into a sealed pool, nor
// taken for a sealed call.
func (e *Executor) warmSpec(fn executor.Function) string {
	if e.sealAs(fn) != "" {
		return SpecHash(fn) + sealedSpec
	}
	return SpecHash(fn)
}

// sealedSandbox: the sandbox's version (its job's MetaSpec) says it was
// built sealed.
func sealedSandbox(spec string) bool { return strings.HasSuffix(spec, sealedSpec) }

// warmJob is functionJob's task, unchanged in image, runtime, network,
// user, limits and labels, waiting for its call: the shim runs with -wait
// on the envelope the template renders, which rings SIGUSR1 when the
// variable is written. No payload (it forbids one): the call comes later.
func (e *Executor) warmJob(fn executor.Function) *nomad.Job {
	job := e.functionJob(fn, false)
	id := WarmJobID(e.cfg.ClusterID, fn)
	job.ID, job.Name = ptr(id), ptr(id)
	job.Meta[MetaSpec] = e.warmSpec(fn)
	job.ParameterizedJob = &nomad.ParameterizedJobConfig{Payload: "forbidden", MetaRequired: []string{MetaWarm}}
	task := job.TaskGroups[0].Tasks[0]
	task.DispatchPayload = nil
	task.Config["entrypoint"] = e.entrypoint(fn, "-wait", "-ready", WarmReadyPath, "-envelope", WarmEnvelopePath)
	labels := task.Config["labels"].([]map[string]string)
	delete(labels[0], executor.LabelCall)
	task.Templates = []*nomad.Template{{
		EmbeddedTmpl: ptr(warmTemplate),
		DestPath:     ptr("local/envelope.json"),
		ChangeMode:   ptr("signal"),
		ChangeSignal: ptr("SIGUSR1"),
		// The default splay (5 s) delayed the signal 0.2-4.1 s.
		Splay: ptr(time.Duration(0)),
		Perms: ptr("0644"),
	}}
	return job
}
