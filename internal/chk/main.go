package main
import (
 _ "github.com/gin-gonic/gin"
 _ "github.com/hashicorp/raft"
 _ "github.com/hashicorp/raft-boltdb/v2"
 _ "github.com/hashicorp/go-memdb"
 _ "github.com/hashicorp/consul/api"
 _ "github.com/hashicorp/nomad/api"
 _ "github.com/docker/docker/client"
 _ "github.com/spf13/cobra"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/anishathalye/porcupine"
)
func main(){}
