// Command kube is a multi-call binary holding the Kubernetes components the local cluster runs.
// One binary means one link instead of six, which is most of a warm rebuild on two cores.
// The component is chosen by the name it is called as (kube-apiserver → kube-apiserver), or by
// the first argument when called as "kube" ("kube kubelet --config ..."). "kube cri-reset" is a
// small teardown helper of our own (see cri_reset.go).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones, as upstream's apiserver and controller-manager do.

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // kubernetes_build_info
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var servers = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kube-proxy":              proxy.NewProxyCommand,
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	if name == "kube" {
		if len(os.Args) < 2 {
			usage()
		}
		name, args = os.Args[1], os.Args[1:]
	}
	// cli.Run and kubectl read os.Args themselves, so make them see the component's own argv.
	os.Args = args
	switch name {
	case "kubectl":
		runKubectl()
		return
	case "cri-reset":
		os.Exit(criReset(args[1:]))
	}
	newCommand, ok := servers[name]
	if !ok {
		usage()
	}
	os.Exit(cli.Run(newCommand()))
}

// runKubectl mirrors upstream's cmd/kubectl main: verbosity is parsed early so that command
// construction (plugins, kuberc) can already log.
func runKubectl() {
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
		kubectlutil.CheckErr(err)
	}
}

func usage() {
	names := []string{"kubectl", "cri-reset"}
	for name := range servers {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: kube COMPONENT [args...], or call it as COMPONENT; components: %v\n", names)
	os.Exit(2)
}
