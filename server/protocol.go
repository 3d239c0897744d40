package server

import (
	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// memberRecord is the replicated record of a server.
func memberRecord(m api.Member) *fsm.Member {
	return &fsm.Member{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Protocol: m.Protocol}
}

// clusterProtocol is the newest entry format every server of the Raft
// configuration applies: the lowest Protocol their member records hold
// (0 for a server without a record yet, or of a version before the
// field). A rolling upgrade thus keeps writing the entries the old
// servers know until the last of them recorded the new version.
func (s *Server) clusterProtocol() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	ms, err := s.store.Members(nil)
	if err != nil {
		return 0
	}
	return lowestProtocol(f.Configuration().Servers, ms)
}

func lowestProtocol(servers []raft.Server, ms []*fsm.Member) int {
	byID := make(map[string]int, len(ms))
	for _, m := range ms {
		byID[m.ID] = m.Protocol
	}
	low := fsm.Protocol
	for _, sv := range servers {
		low = min(low, byID[string(sv.ID)]) // a server without a record: 0
	}
	return low
}

// stageType is the entry type of a staged chunk the whole cluster applies.
func (s *Server) stageType() fsm.MessageType {
	if s.clusterProtocol() >= 1 {
		return fsm.PayloadStageBinType
	}
	return fsm.PayloadStageType
}
