package fsm

import (
	"fmt"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

func (p *processor) applyUserUpsert(txn *cachestore.Txn, index uint64, req *UserUpsertRequest) any {
	u := *req.User
	raw, err := txn.First(TableUsers, IndexID, u.Name)
	if err != nil {
		return fmt.Errorf("user lookup: %w", err)
	}
	if raw != nil {
		if req.Create {
			return fmt.Errorf("user %q %w", u.Name, ErrExists)
		}
		old := raw.(*User)
		u.CreateIndex, u.CreatedAt = old.CreateIndex, old.CreatedAt
	} else {
		u.CreateIndex = index
	}
	u.ModifyIndex = index
	if err := txn.Insert(TableUsers, &u); err != nil {
		return fmt.Errorf("user insert: %w", err)
	}
	return setIndex(txn, TableUsers, index)
}

func (p *processor) applyUserDelete(txn *cachestore.Txn, index uint64, req *UserDeleteRequest) any {
	raw, err := txn.First(TableUsers, IndexID, req.Name)
	if err != nil {
		return fmt.Errorf("user lookup: %w", err)
	}
	if raw == nil {
		return fmt.Errorf("user %q %w", req.Name, ErrNotFound)
	}
	fns, err := txn.First(TableFunctions, IndexOwner, req.Name)
	if err != nil {
		return fmt.Errorf("function lookup: %w", err)
	}
	if fns != nil {
		return fmt.Errorf("user %q still owns functions: %w", req.Name, ErrConflict)
	}
	if err := txn.Delete(TableUsers, raw); err != nil {
		return fmt.Errorf("user delete: %w", err)
	}
	if _, err := txn.DeleteAll(TableTokens, IndexUser, req.Name); err != nil {
		return fmt.Errorf("token delete: %w", err)
	}
	if err := setIndex(txn, TableTokens, index); err != nil {
		return err
	}
	return setIndex(txn, TableUsers, index)
}

func (p *processor) applyTokenUpsert(txn *cachestore.Txn, index uint64, req *TokenUpsertRequest) any {
	t := *req.Token
	u, err := txn.First(TableUsers, IndexID, t.User)
	if err != nil {
		return fmt.Errorf("user lookup: %w", err)
	}
	if u == nil {
		return fmt.Errorf("user %q %w", t.User, ErrNotFound)
	}
	if old, _ := txn.First(TableTokens, IndexSecret, t.SecretHash); old != nil && old.(*Token).AccessorID != t.AccessorID {
		return fmt.Errorf("token secret %w", ErrExists)
	}
	t.CreateIndex = index
	if err := txn.Insert(TableTokens, &t); err != nil {
		return fmt.Errorf("token insert: %w", err)
	}
	return setIndex(txn, TableTokens, index)
}

func (p *processor) applyTokenDelete(txn *cachestore.Txn, index uint64, req *TokenDeleteRequest) any {
	n, err := txn.DeleteAll(TableTokens, IndexID, req.AccessorID)
	if err != nil {
		return fmt.Errorf("token delete: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("token %q %w", req.AccessorID, ErrNotFound)
	}
	return setIndex(txn, TableTokens, index)
}

func (p *processor) applyMemberUpsert(txn *cachestore.Txn, index uint64, req *MemberUpsertRequest) any {
	m := *req.Member
	if err := txn.Insert(TableMembers, &m); err != nil {
		return fmt.Errorf("member insert: %w", err)
	}
	return setIndex(txn, TableMembers, index)
}

func (p *processor) applyMemberDelete(txn *cachestore.Txn, index uint64, req *MemberDeleteRequest) any {
	if _, err := txn.DeleteAll(TableMembers, IndexID, req.ID); err != nil {
		return fmt.Errorf("member delete: %w", err)
	}
	return setIndex(txn, TableMembers, index)
}
