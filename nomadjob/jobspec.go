package nomadjob

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// Names inside the jobs.
const (
	GroupName    = "g"
	TaskName     = "fn"
	PayloadFile  = "payload"
	MetaCallID   = "call_id"
	MetaKey      = "hf_key"
	BigSuffix    = "-big"
	ShimPath     = "/local/hf-shim"
	EnvelopePath = "/local/" + PayloadFile
	StdinPath    = "/local/stdin"
	ResultDir    = "/alloc/data"
	// Paths of the result files as the fs endpoints name them.
	ResultFilePath = "alloc/data/" + shim.ResultFile
	StdoutFilePath = "alloc/data/" + shim.StdoutFile
)

// JobID is the parameterized job of a function: hf-<owner>-<name>, reduced
// to the characters Nomad and DNS like. When sanitizing changed anything, a
// short hash of the original keeps two functions apart.
func JobID(fn executor.Function) string {
	owner, name := fn.Owner, fn.Name
	if owner == "" && name == "" {
		owner, name, _ = strings.Cut(fn.ID, "/")
	}
	raw := owner + "-" + name
	clean := sanitize(raw)
	if clean != raw {
		sum := sha256.Sum256([]byte(fn.Owner + "/" + fn.Name + "/" + fn.ID))
		clean += "-" + hex.EncodeToString(sum[:3])
	}
	return "hf-" + clean
}

// BigJobID is the job variant that fetches stdin as an artifact.
func BigJobID(fn executor.Function) string { return JobID(fn) + BigSuffix }

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// functionJob builds the parameterized batch job of fn. big adds the stdin
// artifact.
func (e *Executor) functionJob(fn executor.Function, big bool) *nomad.Job {
	id := JobID(fn)
	if big {
		id += BigSuffix
	}
	cpu, mem := fn.CPU, fn.MemoryMB
	if cpu <= 0 {
		cpu = 100
	}
	if mem <= 0 {
		mem = 64
	}
	artifacts := []*nomad.TaskArtifact{e.shimArtifact()}
	meta := nomad.ParameterizedJobConfig{
		Payload:      "optional",
		MetaRequired: []string{MetaCallID},
		MetaOptional: []string{MetaKey},
	}
	if big {
		artifacts = append(artifacts, &nomad.TaskArtifact{
			GetterSource: ptr(e.cfg.ArtifactBaseURL + "/v1/artifacts/stdin/${NOMAD_META_" + MetaCallID + "}?key=${NOMAD_META_" + MetaKey + "}"),
			GetterMode:   ptr("file"),
			RelativeDest: ptr("local/stdin"),
		})
	}
	task := &nomad.Task{
		Name:   TaskName,
		Driver: "docker",
		Config: map[string]any{
			"image":        fn.Image,
			"runtime":      e.cfg.Runtime,
			"network_mode": "none",
			"entrypoint":   []string{ShimPath, "-envelope", EnvelopePath},
			"labels": map[string]string{
				executor.LabelManaged:  "true",
				executor.LabelFunction: fn.ID,
				executor.LabelCall:     "${NOMAD_META_" + MetaCallID + "}",
			},
		},
		Resources: &nomad.Resources{CPU: ptr(cpu), MemoryMB: ptr(mem)},
		RestartPolicy: &nomad.RestartPolicy{
			Attempts: ptr(0), Interval: ptr(24 * time.Hour), Delay: ptr(time.Duration(0)), Mode: ptr("fail"),
		},
		LogConfig:       &nomad.LogConfig{MaxFiles: ptr(2), MaxFileSizeMB: ptr(2)},
		DispatchPayload: &nomad.DispatchPayloadConfig{File: PayloadFile},
		Artifacts:       artifacts,
		KillTimeout:     ptr(5 * time.Second),
	}
	job := &nomad.Job{
		ID:          ptr(id),
		Name:        ptr(id),
		Type:        ptr("batch"),
		Datacenters: e.cfg.Datacenters,
		Constraints: e.cfg.Constraints,
		Meta: map[string]string{
			"hf_function": fn.ID,
			"hf_managed":  "true",
		},
		ParameterizedJob: &meta,
		TaskGroups: []*nomad.TaskGroup{{
			Name:  ptr(GroupName),
			Count: ptr(1),
			RestartPolicy: &nomad.RestartPolicy{
				Attempts: ptr(0), Interval: ptr(24 * time.Hour), Delay: ptr(time.Duration(0)), Mode: ptr("fail"),
			},
			ReschedulePolicy: &nomad.ReschedulePolicy{Attempts: ptr(0), Unlimited: ptr(false)},
			Tasks:            []*nomad.Task{task},
		}},
	}
	if e.cfg.NodePool != "" {
		job.NodePool = ptr(e.cfg.NodePool)
	}
	if e.cfg.Namespace != "" {
		job.Namespace = ptr(e.cfg.Namespace)
	}
	return job
}

func (e *Executor) shimArtifact() *nomad.TaskArtifact {
	return &nomad.TaskArtifact{
		GetterSource:  ptr(e.cfg.ArtifactBaseURL + e.cfg.ShimArtifactPath),
		GetterOptions: map[string]string{"checksum": "sha256:" + e.cfg.ShimSHA256},
		GetterMode:    ptr("any"),
		RelativeDest:  ptr("local/"),
	}
}

// PullJobID names the sysbatch job that pulls image on every client.
func PullJobID(image string) string {
	sum := sha256.Sum256([]byte(image))
	return "hf-pull-" + hex.EncodeToString(sum[:6])
}

// pullJob runs the shim once on every eligible client, which makes the
// docker driver pull the image. The shim, given no envelope, exits non-zero
// at once: only a driver failure (the pull) counts.
func (e *Executor) pullJob(image string) *nomad.Job {
	id := PullJobID(image)
	task := &nomad.Task{
		Name:   TaskName,
		Driver: "docker",
		Config: map[string]any{
			"image":        image,
			"runtime":      e.cfg.Runtime,
			"network_mode": "none",
			"entrypoint":   []string{ShimPath, "-envelope", "/local/none"},
		},
		Resources: &nomad.Resources{CPU: ptr(50), MemoryMB: ptr(32)},
		RestartPolicy: &nomad.RestartPolicy{
			Attempts: ptr(0), Interval: ptr(24 * time.Hour), Delay: ptr(time.Duration(0)), Mode: ptr("fail"),
		},
		LogConfig: &nomad.LogConfig{MaxFiles: ptr(1), MaxFileSizeMB: ptr(1)},
		Artifacts: []*nomad.TaskArtifact{e.shimArtifact()},
	}
	job := &nomad.Job{
		ID:          ptr(id),
		Name:        ptr(id),
		Type:        ptr("sysbatch"),
		Datacenters: e.cfg.Datacenters,
		Constraints: e.cfg.Constraints,
		Meta:        map[string]string{"hf_managed": "true", "hf_pull": image},
		TaskGroups: []*nomad.TaskGroup{{
			Name:  ptr(GroupName),
			Count: ptr(1),
			RestartPolicy: &nomad.RestartPolicy{
				Attempts: ptr(0), Interval: ptr(24 * time.Hour), Delay: ptr(time.Duration(0)), Mode: ptr("fail"),
			},
			Tasks: []*nomad.Task{task},
		}},
	}
	if e.cfg.NodePool != "" {
		job.NodePool = ptr(e.cfg.NodePool)
	}
	return job
}

// BuildEnvelope is the shim envelope of a call. With inline false the stdin
// is left to the artifact at StdinPath.
func BuildEnvelope(spec executor.Spec, stdoutLimit int64, inline bool) shim.Envelope {
	argv := append(append([]string{}, spec.Function.Entrypoint...), spec.Function.Command...)
	env := spec.Env
	if env == nil {
		env = spec.Function.Env
	}
	if spec.StdoutLimit > 0 {
		stdoutLimit = spec.StdoutLimit
	}
	en := shim.Envelope{
		Version:     shim.EnvelopeVersion,
		CallID:      spec.CallID,
		Argv:        argv,
		Env:         env,
		Workdir:     spec.Function.Workdir,
		StdoutLimit: stdoutLimit,
		TimeoutMs:   spec.Function.Timeout.Milliseconds(),
		ResultDir:   ResultDir,
	}
	if inline {
		en.Stdin = spec.Stdin
	} else {
		en.StdinFile = StdinPath
	}
	return en
}

// ErrEnvelopeTooLarge: even without stdin the call's envelope (argv, env)
// is over Nomad's dispatch payload cap.
var ErrEnvelopeTooLarge = fmt.Errorf("%w: call envelope (argv and environment) exceeds Nomad's %d-byte dispatch payload limit", ErrRefused, MaxPayload)

// payloadFor picks the job and the payload of a call: inline stdin when the
// whole envelope fits the dispatch payload, else the -big job with stdin as
// an artifact.
func payloadFor(spec executor.Spec, stdoutLimit int64) (payload []byte, big bool, err error) {
	inline, err := json.Marshal(BuildEnvelope(spec, stdoutLimit, true))
	if err != nil {
		return nil, false, fmt.Errorf("nomad executor: encode envelope: %w", err)
	}
	if len(inline) <= MaxPayload {
		return inline, false, nil
	}
	out, err := json.Marshal(BuildEnvelope(spec, stdoutLimit, false))
	if err != nil {
		return nil, false, fmt.Errorf("nomad executor: encode envelope: %w", err)
	}
	if len(out) > MaxPayload {
		return nil, false, fmt.Errorf("call %s: %w (%d bytes)", spec.CallID, ErrEnvelopeTooLarge, len(out))
	}
	return out, true, nil
}

// ShimArchive packs the shim binary as the tar.gz the frontend serves at
// ShimArtifactPath: one entry "hf-shim", mode 0755, fixed time, so that the
// same binary always gives the same archive and checksum. It returns the
// archive and its hex sha256 (Config.ShimSHA256).
func ShimArchive(binary []byte) ([]byte, string, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, "", err
	}
	gz.ModTime = time.Unix(0, 0)
	tw := tar.NewWriter(gz)
	hdr := &tar.Header{
		Name: "hf-shim", Mode: 0o755, Size: int64(len(binary)),
		ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, "", err
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, "", err
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := gz.Close(); err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:]), nil
}
