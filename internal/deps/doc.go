// Package deps holds no code, only a test of the module's import graph:
// the client side (the Go client, rookeryctl, the gateway) must build
// without linking the server (raft, its log stores, the cluster package),
// as etcd's client module may not import its server.
package deps
