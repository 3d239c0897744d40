package nomadjob

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// Config of the Nomad executor.
type Config struct {
	// Connection, read from the environment like the nomad CLI does
	// (NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE, NOMAD_REGION, NOMAD_CACERT,
	// NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY, NOMAD_SKIP_VERIFY) by ConfigFromEnv.
	Address   string
	Token     string
	Namespace string
	Region    string
	TLS       TLSConfig

	// Placement of the function jobs.
	Datacenters []string // default ["dc1"]
	NodePool    string
	Constraints []*nomad.Constraint
	Runtime     string // docker runtime, default "runsc"

	// ArtifactBaseURL is the frontend's HTTP address as the Nomad clients
	// reach it (e.g. http://hyperfunc.service.consul:4680). The shim and large
	// stdin are fetched from it.
	ArtifactBaseURL string
	// ShimArtifactPath is the path of the shim artifact under
	// ArtifactBaseURL. It is a tar.gz archive holding hf-shim with mode 0755
	// (see ShimArchive): Nomad's artifact getter writes a plain file without
	// its executable bit (nomad#2625), and the shim is the entrypoint.
	ShimArtifactPath string // default "/v1/artifacts/hf-shim.tar.gz"
	// ShimSHA256 is the hex sha256 of what ShimArtifactPath serves.
	ShimSHA256 string
	// ShimVolume, when set, names a Nomad host volume on the clients that
	// holds the hf-shim binary (client config: host_volume "<name>" { path
	// = "<dir with hf-shim>" read_only = true }, see jobspecs/). Tasks then
	// mount it at ShimVolumeDir instead of downloading the shim artifact for
	// every call (~0.1-0.25 s per allocation); jobs only place on clients
	// that declare the volume. Empty: the artifact (any client works).
	ShimVolume string

	// ClusterID is the hyperfunc cluster this executor works for (see
	// executor.LabelCluster; the agent derives it from the cluster key).
	// Job IDs, labels and meta carry it; CleanOrphans and Reconcile's search by meta touch only jobs
	// whose hf_cluster meta equals it.
	ClusterID string

	// StdoutLimit is the default stdout cap of a call (Spec.StdoutLimit wins).
	StdoutLimit int64 // default 1 MiB

	// Timers (zero: defaults).
	StreamBackoffMin time.Duration // default 250ms
	StreamBackoffMax time.Duration // default 10s
	RecheckInterval  time.Duration // safety re-check of watched calls, default 1m
	CollectTimeout   time.Duration // per Nomad request while collecting, default 30s
	// PurgeDelay is how long Release and CleanOrphans leave a released
	// child and its call's record before purging them, so that the
	// child's idempotency token answers a dispatch a deposed leader had in
	// flight (DefaultPurgeDelay says why). 0: purge at once. ConfigFromEnv
	// sets DefaultPurgeDelay.
	PurgeDelay time.Duration
	// WarmDeliverTimeout bounds a warm claim to the shim's start of the
	// call (default 1m): past it the call fails and the sandbox is stopped.
	WarmDeliverTimeout time.Duration

	// NoSeal runs every task wholly as its function's user without any
	// capability, for Nomad clients whose docker plugin allow_caps leaves
	// out setuid, setgid or kill. By default the shim of a function whose
	// user is a numeric non-root UID:GID runs as root with those three
	// capabilities and drops to the user for the command, so that it can
	// seal the sandbox (shim/seal.go) and a warm call is read before its
	// allocation ends. With NoSeal warm calls wait for the end (~0.5 s).
	NoSeal bool
}

// TLSConfig is the client TLS of the Nomad connection.
type TLSConfig struct {
	CACert     string
	ClientCert string
	ClientKey  string
	Insecure   bool
}

// Defaults.
const (
	DefaultRuntime          = "runsc"
	DefaultStdoutLimit      = 1 << 20
	DefaultShimArtifactPath = "/v1/artifacts/hf-shim.tar.gz"
	// MaxPayload is Nomad's cap on a dispatch payload (fixture 06).
	MaxPayload = 16384
)

// ConfigFromEnv returns a Config with the connection read from the
// environment as the nomad CLI reads it, and defaults elsewhere.
func ConfigFromEnv() Config {
	d := nomad.DefaultConfig()
	c := Config{
		Address:   d.Address,
		Token:     d.SecretID,
		Namespace: d.Namespace,
		Region:    d.Region,
	}
	if d.TLSConfig != nil {
		c.TLS = TLSConfig{
			CACert:     d.TLSConfig.CACert,
			ClientCert: d.TLSConfig.ClientCert,
			ClientKey:  d.TLSConfig.ClientKey,
			Insecure:   d.TLSConfig.Insecure,
		}
	}
	if v := os.Getenv("NOMAD_DATACENTERS"); v != "" {
		c.Datacenters = strings.Split(v, ",")
	}
	c.PurgeDelay = DefaultPurgeDelay
	return c.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.Address == "" {
		c.Address = "http://127.0.0.1:4646"
	}
	if len(c.Datacenters) == 0 {
		c.Datacenters = []string{"dc1"}
	}
	if c.Runtime == "" {
		c.Runtime = DefaultRuntime
	}
	if c.ShimArtifactPath == "" {
		c.ShimArtifactPath = DefaultShimArtifactPath
	}
	if c.StdoutLimit <= 0 {
		c.StdoutLimit = DefaultStdoutLimit
	}
	if c.StreamBackoffMin <= 0 {
		c.StreamBackoffMin = 250 * time.Millisecond
	}
	if c.StreamBackoffMax <= 0 {
		c.StreamBackoffMax = 10 * time.Second
	}
	if c.RecheckInterval <= 0 {
		c.RecheckInterval = time.Minute
	}
	if c.CollectTimeout <= 0 {
		c.CollectTimeout = 30 * time.Second
	}
	if c.WarmDeliverTimeout <= 0 {
		c.WarmDeliverTimeout = time.Minute
	}
	c.ArtifactBaseURL = strings.TrimRight(c.ArtifactBaseURL, "/")
	return c
}

// Validate reports a configuration that cannot run calls.
func (c Config) Validate() error {
	var errs []error
	if c.ArtifactBaseURL == "" {
		errs = append(errs, errors.New("nomad executor: ArtifactBaseURL is required (the frontend address Nomad clients fetch the shim from)"))
	} else if u, err := url.Parse(c.ArtifactBaseURL); err != nil || u.Scheme == "" || u.Host == "" {
		errs = append(errs, fmt.Errorf("nomad executor: ArtifactBaseURL %q is not an absolute URL", c.ArtifactBaseURL))
	}
	if c.PurgeDelay < 0 {
		errs = append(errs, fmt.Errorf("nomad executor: the purge delay (-nomad-purge-delay) is %s; use 0 (purge at once) or more", c.PurgeDelay))
	}
	if len(c.ShimSHA256) != 64 {
		errs = append(errs, errors.New("nomad executor: ShimSHA256 must be the hex sha256 of the shim artifact"))
	}
	return errors.Join(errs...)
}

// APIConfig is the nomad/api client configuration.
func (c Config) APIConfig() *nomad.Config {
	ac := nomad.DefaultConfig()
	ac.Address = c.Address
	ac.SecretID = c.Token
	ac.Namespace = c.Namespace
	ac.Region = c.Region
	ac.TLSConfig = &nomad.TLSConfig{
		CACert:     c.TLS.CACert,
		ClientCert: c.TLS.ClientCert,
		ClientKey:  c.TLS.ClientKey,
		Insecure:   c.TLS.Insecure,
	}
	return ac
}
