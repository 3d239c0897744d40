package localexec

// CrashBeforeStart makes every Start of e stop after creating the container
// and before starting it, as a leader that dies in that window; Start then
// fails with err.
func CrashBeforeStart(e *Executor, err error) {
	e.beforeStart = func(string) error { return err }
}
