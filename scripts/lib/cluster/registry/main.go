// Command registry is the local cluster's image registry: distribution's registry with only the
// filesystem storage driver. Upstream's cmd/registry also links the Azure, GCS and S3 drivers and
// their SDKs, which would double a cold build on two cores for drivers never used here.
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
