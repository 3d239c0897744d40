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
	// ShimVolumeDir is where the client's shim host volume (Config.ShimVolume)
	// is mounted; ShimVolumePath the shim in it.
	ShimVolumeDir  = "/hf"
	ShimVolumePath = ShimVolumeDir + "/hf-shim"
	shimVolumeName = "hf-shim"
	// TmpBytes bounds a call's /tmp (a tmpfs; the root is read-only).
	TmpBytes = 64 << 20
	// Paths of the result files as the fs endpoints name them.
	ResultFilePath = "alloc/data/" + shim.ResultFile
	StdoutFilePath = "alloc/data/" + shim.StdoutFile
)

// JobID is the parameterized job of a function: hf-<owner>-<name>, or
// hf-<cluster tag>-<owner>-<name> in the cluster clusterID (may be
// empty), so that two hyperfunc clusters sharing one Nomad never register
// over each other's jobs. It is one-to-one: when the owner holds a "-"
// (user alice-x's function y and user alice's x-y were both hf-alice-x-y:
// one user's calls ran in the other's image, with its stdin) or sanitizing
// to the characters Nomad and DNS like changed anything, "_" and 12 hex of
// the sha256 of the function follow. Names never hold "_", so a name cannot
// be chosen to match another function's suffixed ID. So do they when the
// name ends with BigSuffix (alice's x-big was alice/x's big job) and, with
// no cluster ID, when the owner could be a ClusterTag (its hf-<owner>-
// would read as that cluster's prefix).
func JobID(clusterID string, fn executor.Function) string {
	owner, name := fn.Owner, fn.Name
	if owner == "" && name == "" {
		owner, name, _ = strings.Cut(fn.ID, "/")
	}
	raw := owner + "-" + name
	clean := sanitize(raw)
	if clean != raw || strings.Contains(owner, "-") || strings.HasSuffix(name, BigSuffix) || (clusterID == "" && isClusterTag(owner)) {
		sum := sha256.Sum256([]byte(fn.Owner + "/" + fn.Name + "/" + fn.ID))
		clean += "_" + hex.EncodeToString(sum[:6])
	}
	return jobPrefix(clusterID) + clean
}

// isClusterTag: s could be a ClusterTag (10 lower-case hex digits). With
// no cluster ID, such an owner's "hf-<owner>-<name>" would read as another
// cluster's "hf-<tag>-<name>" (JobID suffixes it).
func isClusterTag(s string) bool {
	if len(s) != 10 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// BigJobID is the job variant that fetches stdin as an artifact.
func BigJobID(clusterID string, fn executor.Function) string {
	return JobID(clusterID, fn) + BigSuffix
}

// ClusterTag is the short form of a cluster ID that the cluster's job IDs
// carry: 10 hex digits of its sha256 ("" for no cluster).
func ClusterTag(clusterID string) string {
	if clusterID == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(clusterID))
	return hex.EncodeToString(sum[:5])
}

// jobPrefix starts every job ID of a cluster: "hf-<tag>-", or "hf-".
func jobPrefix(clusterID string) string {
	if t := ClusterTag(clusterID); t != "" {
		return "hf-" + t + "-"
	}
	return "hf-"
}

// sanitize maps s to lower-case letters, digits and "-" ("_" is JobID's
// and WarmSuffix's).
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// Meta keys of the jobs (dispatched children inherit them).
const (
	MetaFunction = "hf_function"
	MetaManaged  = "hf_managed"
	MetaCluster  = "hf_cluster"
	MetaPull     = "hf_pull"
)

// noRestart: a call runs at most once (restart and reschedule attempts 0).
func noRestart() *nomad.RestartPolicy {
	return &nomad.RestartPolicy{
		Attempts: ptr(0), Interval: ptr(24 * time.Hour), Delay: ptr(time.Duration(0)), Mode: ptr("fail"),
	}
}

// dockerTask is the task every job runs: the function's image under the
// shim, hardened as the local executor hardens its containers: gVisor
// (Config.Runtime), no network, every capability dropped,
// no-new-privileges, a pids limit, the function's user (nobody by
// default), a read-only root with a 64 MiB tmpfs /tmp. A sealable
// function's shim (sealAs) runs as root with CAP_SETUID, CAP_SETGID and
// CAP_KILL and starts the command as the function's user, which then has
// no capability, as before; any other runs wholly as its user. The labels say which cluster and executor the container
// belongs to, so that a local-engine agent on the same dockerd leaves it
// alone; the docker driver wants them as a list of maps (a map fails every
// task with "Failed Validation").
func (e *Executor) dockerTask(fn executor.Function, image, callLabel, envelope string) *nomad.Task {
	labels := map[string]string{
		executor.LabelManaged:  "true",
		executor.LabelExecutor: "nomad",
		executor.LabelCluster:  e.cfg.ClusterID,
		executor.LabelFunction: fn.ID,
	}
	if callLabel != "" {
		labels[executor.LabelCall] = callLabel
	}
	task := &nomad.Task{
		Name:   TaskName,
		Driver: "docker",
		User:   fn.RunAs(),
		Config: map[string]any{
			"image":        image,
			"runtime":      e.cfg.Runtime,
			"network_mode": "none",
			"entrypoint":   e.entrypoint(fn, "-envelope", envelope),
			"labels":       []map[string]string{labels},
			"cap_drop":     []string{"ALL"},
			"security_opt": []string{"no-new-privileges"},
			"pids_limit":   executor.DefaultPidsLimit,
			// A read-only root with a bounded /tmp, as the local executor
			// runs it (Nomad's /alloc, /local and /secrets stay writable).
			"readonly_rootfs": true,
			"mount": []map[string]any{{
				"type": "tmpfs", "target": "/tmp", "readonly": false,
				"tmpfs_options": map[string]any{"size": TmpBytes},
			}, {
				// The task's view of /alloc/logs is an empty tmpfs. The
				// host's alloc/logs is world-writable and Nomad's logmon
				// writes and rotates the task's logs there as root,
				// following links (os.OpenFile O_CREATE|O_APPEND): a task
				// that left fn.stderr.1 -> /etc/passwd and wrote 2 MB to
				// stderr appended to that host file (found by a review,
				// TestRealNomadLogsOutOfReach). Its stdout and stderr
				// still reach logmon through their FIFOs.
				"type": "tmpfs", "target": "/alloc/logs", "readonly": false,
				"tmpfs_options": map[string]any{"size": 64 << 10},
			}},
		},
		RestartPolicy: noRestart(),
		KillTimeout:   ptr(5 * time.Second),
	}
	if e.sealAs(fn) != "" {
		task.User = "0:0"
		task.Config["cap_add"] = sealCaps
	}
	if e.cfg.ShimVolume != "" {
		task.VolumeMounts = []*nomad.VolumeMount{{
			Volume: ptr(shimVolumeName), Destination: ptr(ShimVolumeDir), ReadOnly: ptr(true),
		}}
	} else {
		task.Artifacts = []*nomad.TaskArtifact{e.shimArtifact()}
	}
	return task
}

// sealCaps are what a sealing shim needs: to start the command as the
// function's user (setgroups, setresgid, setresuid) and to kill what it
// left (kill(-1) reaches another uid's processes only with CAP_KILL). All
// three are in the Nomad docker plugin's default allow_caps.
var sealCaps = []string{"SETUID", "SETGID", "KILL"}

// sealAs is the numeric "UID:GID" a sealing shim runs fn's command as, or
// "" when fn's task is not sealed: Config.NoSeal, a user given by name
// (the image's /etc/passwd says who it is, which only Docker reads), or a
// uid or gid 0 (the command could then act as the shim: shim/seal.go).
func (e *Executor) sealAs(fn executor.Function) string {
	if e.cfg.NoSeal {
		return ""
	}
	// The shim's own parse: what it would refuse is never sealed.
	cred, err := shim.ParseUser(fn.RunAs())
	if err != nil || cred.Uid == 0 || cred.Gid == 0 {
		return ""
	}
	return fn.RunAs()
}

// entrypoint is the shim with args, and -as when fn is sealed.
func (e *Executor) entrypoint(fn executor.Function, args ...string) []string {
	ep := []string{ShimPath}
	if e.cfg.ShimVolume != "" {
		ep[0] = ShimVolumePath
	}
	if as := e.sealAs(fn); as != "" {
		ep = append(ep, "-as", as)
	}
	return append(ep, args...)
}

// group wraps the task; with Config.ShimVolume it asks for the client's
// host volume that holds the shim.
func (e *Executor) group(task *nomad.Task, reschedule bool) *nomad.TaskGroup {
	g := &nomad.TaskGroup{
		Name:          ptr(GroupName),
		Count:         ptr(1),
		RestartPolicy: noRestart(),
		Tasks:         []*nomad.Task{task},
	}
	if reschedule {
		g.ReschedulePolicy = &nomad.ReschedulePolicy{Attempts: ptr(0), Unlimited: ptr(false)}
	}
	if e.cfg.ShimVolume != "" {
		g.Volumes = map[string]*nomad.VolumeRequest{shimVolumeName: {
			Name: shimVolumeName, Type: "host", Source: e.cfg.ShimVolume, ReadOnly: true,
		}}
	}
	return g
}

// functionJob builds the parameterized batch job of fn. big adds the stdin
// artifact.
func (e *Executor) functionJob(fn executor.Function, big bool) *nomad.Job {
	id := JobID(e.cfg.ClusterID, fn)
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
	meta := nomad.ParameterizedJobConfig{
		Payload:      "optional",
		MetaRequired: []string{MetaCallID},
		MetaOptional: []string{MetaKey},
	}
	task := e.dockerTask(fn, fn.Image, "${NOMAD_META_"+MetaCallID+"}", EnvelopePath)
	if big {
		task.Artifacts = append(task.Artifacts, &nomad.TaskArtifact{
			GetterSource: ptr(e.cfg.ArtifactBaseURL + "/v1/artifacts/stdin/${NOMAD_META_" + MetaCallID + "}?key=${NOMAD_META_" + MetaKey + "}"),
			GetterMode:   ptr("file"),
			RelativeDest: ptr("local/stdin"),
		})
	}
	task.Resources = &nomad.Resources{CPU: ptr(cpu), MemoryMB: ptr(mem)}
	task.LogConfig = &nomad.LogConfig{MaxFiles: ptr(2), MaxFileSizeMB: ptr(2)}
	task.DispatchPayload = &nomad.DispatchPayloadConfig{File: PayloadFile}
	job := &nomad.Job{
		ID:          ptr(id),
		Name:        ptr(id),
		Type:        ptr("batch"),
		Datacenters: e.cfg.Datacenters,
		Constraints: e.cfg.Constraints,
		Meta: map[string]string{
			MetaFunction: fn.ID,
			MetaManaged:  "true",
			MetaCluster:  e.cfg.ClusterID,
		},
		ParameterizedJob: &meta,
		TaskGroups:       []*nomad.TaskGroup{e.group(task, true)},
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

// PullJobID names the sysbatch job that pulls image on every client for
// the cluster clusterID (may be empty).
func PullJobID(clusterID, image string) string {
	sum := sha256.Sum256([]byte(image))
	// "pull_": a function's ID always holds a "-" before any "_" (owner
	// "-" name), so user "pull"'s function <12 hex> is never this job.
	return jobPrefix(clusterID) + "pull_" + hex.EncodeToString(sum[:6])
}

// pullJob runs the shim once on every eligible client, which makes the
// docker driver pull the image. The shim, given no envelope, exits non-zero
// at once: only a driver failure (the pull) counts.
func (e *Executor) pullJob(image string) *nomad.Job {
	id := PullJobID(e.cfg.ClusterID, image)
	task := e.dockerTask(executor.Function{}, image, "", "/local/none")
	task.Resources = &nomad.Resources{CPU: ptr(50), MemoryMB: ptr(32)}
	task.LogConfig = &nomad.LogConfig{MaxFiles: ptr(1), MaxFileSizeMB: ptr(1)}
	job := &nomad.Job{
		ID:          ptr(id),
		Name:        ptr(id),
		Type:        ptr("sysbatch"),
		Datacenters: e.cfg.Datacenters,
		Constraints: e.cfg.Constraints,
		Meta:        map[string]string{MetaManaged: "true", MetaPull: image, MetaCluster: e.cfg.ClusterID},
		TaskGroups:  []*nomad.TaskGroup{e.group(task, false)},
	}
	if e.cfg.NodePool != "" {
		job.NodePool = ptr(e.cfg.NodePool)
	}
	if e.cfg.Namespace != "" {
		job.Namespace = ptr(e.cfg.Namespace)
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
		// The shim keeps the stderr preview in alloc/data: Nomad's log
		// stream loses the output of short tasks (nomad#6931), and an
		// exit's message quotes the first line of stderr.
		StderrPreview: executor.StderrPreviewBytes,
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
