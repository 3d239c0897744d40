package nomadjob

import (
	nomad "github.com/hashicorp/nomad/api"
)

// ownJob: the job (a dispatched child inherits its parent's meta) was made
// by this executor's cluster. A job without cluster meta belongs to an
// executor without a cluster ID only.
func (e *Executor) ownJob(job *nomad.Job) bool {
	return job != nil && job.Meta[MetaCluster] == e.cfg.ClusterID
}

// listPrefix is the job ID prefix of this cluster's jobs.
func (e *Executor) listPrefix() string { return jobPrefix(e.cfg.ClusterID) }
