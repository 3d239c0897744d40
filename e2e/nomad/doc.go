// Package nomad runs hyperfunc end to end on a real Nomad agent: real
// processes (bin/hyperfunc agent with the Nomad executor, the hyper CLI)
// against the agent at NOMAD_ADDR, which `make test` and `make e2e-nomad`
// start with scripts/nomad-dev.sh (docker driver, runsc allowed, the
// hf-shim host volume). Without NOMAD_ADDR the tests skip loudly; with
// CI=true they fail instead.
//
//	make e2e-nomad
//	NOMAD_ADDR=http://127.0.0.1:4646 go test ./e2e/nomad/ -v
//
// HF_NOMAD_SHIM_VOLUME names the client's shim host volume (default
// hf-shim; "-": none, the shim comes as an artifact from the agent).
// The Nomad client fetches artifacts from the hyperfunc agent's loopback
// HTTP address, so both must run on the same machine.
package nomad
