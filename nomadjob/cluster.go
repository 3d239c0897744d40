package nomadjob

import (
	nomad "github.com/hashicorp/nomad/api"
)

// learnCluster remembers the cluster ID of a function this executor works
// on, when Config.ClusterID did not name it. The first one wins: one
// executor serves one cluster; a function of another is logged.
func (e *Executor) learnCluster(id string) {
	if id == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.cluster {
	case "":
		e.cluster = id
	case id:
	default:
		e.log.Warn("function of another cluster; orphan sweeps keep to the first", "cluster", e.cluster, "other", id)
	}
}

func (e *Executor) clusterID() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cluster
}

// ownJob: the job (a dispatched child inherits its parent's meta) was made
// by this executor's cluster. A job without cluster meta belongs to an
// executor without a cluster ID only.
func (e *Executor) ownJob(job *nomad.Job) bool {
	return job != nil && job.Meta[MetaCluster] == e.clusterID()
}

// listPrefix is the job ID prefix of this cluster's jobs.
func (e *Executor) listPrefix() string { return jobPrefix(e.clusterID()) }
