// Command etcd runs etcd's server from the Go module proxy. etcd's own main module uses replace
// directives, so it cannot be installed with "go install"; this wrapper calls the same entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
