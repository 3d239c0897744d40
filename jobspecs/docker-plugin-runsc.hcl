# Nomad client configuration for hosts that run function calls: the docker
# driver must allow the gVisor runtime that every function job asks for
# (runtime = "runsc"). Drop this file into the client's config directory
# (e.g. /etc/nomad.d/docker-runsc.hcl) and restart the Nomad agent.
#
# Docker itself must know runsc (/etc/docker/daemon.json):
#
#   { "runtimes": { "runsc": { "path": "/usr/bin/runsc" } } }
#
# then `systemctl reload docker` (SIGHUP), and check with
# `docker info --format '{{json .Runtimes}}'`.

# The shim as a host volume: the function jobs mount it read-only instead of
# downloading the shim artifact for every call (roughly 0.1-0.25 s per
# allocation). Put the hf-shim binary of the servers' version (mode 0755) in
# the directory and start the servers with -nomad-shim-volume hf-shim; jobs
# then place only on clients that declare the volume. Without the flag the
# shim comes as an artifact and this block is not needed.
client {
  host_volume "hf-shim" {
    path      = "/opt/hyperfunc/shim"
    read_only = true
  }
  # Many short calls: keep allocations (and their results) until the
  # servers collected them.
  gc_max_allocs = 5000
}

plugin "docker" {
  config {
    allow_runtimes = ["runc", "runsc"]

    # allow_caps may stay Nomad's default: function tasks drop every
    # capability (cap_drop = ["ALL"]), with security_opt no-new-privileges,
    # a pids limit and the function's user (nobody unless it says root);
    # a sealed task (numeric non-root UID:GID) adds back SETUID, SETGID and
    # KILL for the shim only, all three in the default list. A narrower
    # allow_caps fails those tasks: run the servers with -nomad-no-seal.

    # Function containers never need privileges or host mounts.
    allow_privileged = false
    volumes {
      enabled = false
    }

    # Keep pulled function images: `hyper pull` pre-pulls them on every
    # client with a sysbatch job, and each call starts from the local copy.
    gc {
      image       = true
      image_delay = "24h"
      container   = true
    }

    # Calls are short: do not let a slow registry hold a call for long.
    pull_activity_timeout = "2m"
  }
}
