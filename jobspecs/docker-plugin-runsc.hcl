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

plugin "docker" {
  config {
    allow_runtimes = ["runc", "runsc"]

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
