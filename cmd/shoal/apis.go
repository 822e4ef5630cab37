package main

import (
	"log/slog"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/node"
)

// registerAPIs adds each subsystem's HTTP routes to a node's API server.
// Subsystems (kv, pubsub, …) add a line here as they land.
func registerAPIs(api *httpapi.Server, n *node.Node, log *slog.Logger) {}
