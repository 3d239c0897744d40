# The hyperfunc frontend cluster on Nomad: three servers on three distinct
# hosts, Raft data on a host volume, registered in Consul as "hyperfunc"
# (the servers find each other through the Consul catalog and Nomad clients
# fetch the shim and big stdin from it).
#
#   nomad job run -var image=registry.example.com/hyperfunc:0.1.0 jobspecs/hyperfunc.nomad.hcl
#
# Each client that may run a server needs the host volume (client config):
#
#   client {
#     host_volume "hyperfunc-data" {
#       path      = "/opt/hyperfunc/data"
#       read_only = false
#     }
#   }

variable "image" {
  type        = string
  description = "hyperfunc server image (hyperfunc agent + hf-shim next to it)"
  default     = "hyperfunc/hyperfunc:latest"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "consul_addr" {
  type        = string
  description = "Consul HTTP address as seen from the task (host network)"
  default     = "127.0.0.1:8500"
}

variable "nomad_addr" {
  type        = string
  description = "Nomad HTTP address the servers dispatch function jobs to"
  default     = "http://127.0.0.1:4646"
}

job "hyperfunc" {
  datacenters = var.datacenters
  type        = "service"

  # One server per host: losing a host loses one Raft voter, not two.
  constraint {
    operator = "distinct_hosts"
    value    = "true"
  }

  update {
    # Replace one server at a time and wait for it to be healthy (back in
    # the Raft quorum, /v1/agent/health green) before the next.
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "15s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
    stagger           = "30s"
  }

  group "server" {
    count = 3

    # Keep a server on its host (its Raft data lives there).
    reschedule {
      attempts  = 0
      unlimited = false
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "15s"
      mode     = "delay"
    }

    network {
      port "http" { static = 4680 }
      port "raft" { static = 4681 }
    }

    volume "data" {
      type      = "host"
      source    = "hyperfunc-data"
      read_only = false
    }

    service {
      name     = "hyperfunc"
      port     = "http"
      provider = "consul"
      tags     = ["http"]
      meta {
        raft_addr = "${NOMAD_ADDR_raft}"
      }

      check {
        name     = "hyperfunc agent health"
        type     = "http"
        path     = "/v1/agent/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "hyperfunc" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
        args = [
          "agent",
          "-data-dir", "/data",
          "-bootstrap-expect", "3",
          "-consul-addr", var.consul_addr,
          "-http-addr", "0.0.0.0:${NOMAD_PORT_http}",
          "-raft-addr", "0.0.0.0:${NOMAD_PORT_raft}",
          "-advertise-http", "${NOMAD_ADDR_http}",
          "-advertise-raft", "${NOMAD_ADDR_raft}",
          "-nomad-addr", var.nomad_addr,
          "-acl",
        ]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      # Secrets from Nomad Variables (nomad var put nomad/jobs/hyperfunc ...).
      # cluster_key is required (at least 16 bytes, e.g. `openssl rand -base64 32`):
      # servers of a cluster refuse to start without it. Raft runs over mutual
      # TLS derived from it and the server-to-server routes check a token
      # derived from it; it is also what names this cluster's function jobs.
      template {
        destination = "secrets/env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/hyperfunc" -}}
          HYPERFUNC_CLUSTER_KEY={{ .cluster_key }}
          HYPERFUNC_BOOTSTRAP_TOKEN={{ .bootstrap_token }}
          NOMAD_TOKEN={{ .nomad_token }}
          {{- end }}
        EOT
      }

      # Let an in-flight Raft apply finish and leadership move on a stop.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 1000
        memory = 1024
      }
    }
  }
}
