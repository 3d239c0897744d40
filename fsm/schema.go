package fsm

import (
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// Table and index names.
const (
	TableUsers      = "users"
	TableTokens     = "tokens"
	TableFunctions  = "functions"
	TableCalls      = "calls"
	TableMembers    = "members"
	TableOwnerUsage = "owner_usage"
	TableFnStats    = "function_stats"
	TableIndex      = "index"
	TableStaged     = "staged"

	IndexID       = "id"
	IndexSecret   = "secret"
	IndexUser     = "user"
	IndexOwner    = "owner"
	IndexFunction = "function"
	IndexQueue    = "queue"
)

// Schema is the state store's go-memdb schema.
func Schema() *memdb.DBSchema {
	tables := map[string]*memdb.TableSchema{
		TableUsers:      usersTable(),
		TableTokens:     tokensTable(),
		TableFunctions:  functionsTable(),
		TableCalls:      callsTable(),
		TableMembers:    simpleTable(TableMembers, "ID"),
		TableOwnerUsage: simpleTable(TableOwnerUsage, "Owner"),
		TableFnStats:    simpleTable(TableFnStats, "Function"),
		TableIndex:      simpleTable(TableIndex, "Key"),
		TableStaged:     stagedTable(),
	}
	for name, t := range cachestore.Tables() {
		tables[name] = t
	}
	return &memdb.DBSchema{Tables: tables}
}

func idIndex(field string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: IndexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: field}}
}

func simpleTable(name, field string) *memdb.TableSchema {
	return &memdb.TableSchema{Name: name, Indexes: map[string]*memdb.IndexSchema{IndexID: idIndex(field)}}
}

func usersTable() *memdb.TableSchema {
	return simpleTable(TableUsers, "Name")
}

func tokensTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: TableTokens,
		Indexes: map[string]*memdb.IndexSchema{
			IndexID:     idIndex("AccessorID"),
			IndexSecret: {Name: IndexSecret, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "SecretHash"}},
			IndexUser:   {Name: IndexUser, Indexer: &memdb.StringFieldIndex{Field: "User"}},
		},
	}
}

func functionsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: TableFunctions,
		Indexes: map[string]*memdb.IndexSchema{
			IndexID:     idIndex("ID"),
			IndexOwner:  {Name: IndexOwner, Indexer: &memdb.StringFieldIndex{Field: "Owner"}},
			IndexSecret: {Name: IndexSecret, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "SecretHash"}},
		},
	}
}

// callsTable orders calls twice: per function (for listing) and per owner
// and state (the FIFO queue the dispatcher reads head first).
func callsTable() *memdb.TableSchema {
	id := StringIndex[Call]{Field: "ID", Get: func(c *Call) string { return c.ID }}
	fn := StringIndex[Call]{Field: "Function", Get: func(c *Call) string { return c.Function }}
	owner := StringIndex[Call]{Field: "Owner", Get: func(c *Call) string { return c.Owner }}
	state := StringIndex[Call]{Field: "State", Get: func(c *Call) string { return c.State }}
	seq := UintIndex[Call]{Field: "Seq", Get: func(c *Call) uint64 { return c.Seq }}
	return &memdb.TableSchema{
		Name: TableCalls,
		Indexes: map[string]*memdb.IndexSchema{
			IndexID: {Name: IndexID, Unique: true, Indexer: id},
			IndexFunction: {
				Name:    IndexFunction,
				Unique:  true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{fn, seq}},
			},
			IndexQueue: {
				Name:    IndexQueue,
				Unique:  true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{owner, state, seq}},
			},
		},
	}
}

// stagedTable holds the chunks of payloads too large for one entry until
// the entry that takes them: in order per key.
func stagedTable() *memdb.TableSchema {
	key := StringIndex[Staged]{Field: "Key", Get: func(c *Staged) string { return c.Key }}
	off := UintIndex[Staged]{Field: "Offset", Get: func(c *Staged) uint64 { return uint64(c.Offset) }}
	return &memdb.TableSchema{
		Name: TableStaged,
		Indexes: map[string]*memdb.IndexSchema{
			IndexID: {Name: IndexID, Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{key, off}}},
		},
	}
}
