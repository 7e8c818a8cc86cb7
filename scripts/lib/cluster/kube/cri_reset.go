package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criReset stops and removes every pod sandbox on a CRI endpoint, which makes the runtime kill the
// containers and run the CNI DEL that releases IPs, veths and iptables rules. The cluster's
// containerd serves only this cluster, so "every sandbox" is exactly ours. It stands in for
// "crictl rmp --all --force": Debian has no cri-tools, and this reuses code already linked here.
func criReset(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: kube cri-reset unix:///path/to/containerd.sock")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(args[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-reset: %v\n", err)
		return 1
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-reset: listing pod sandboxes: %v\n", err)
		return 1
	}
	failed := 0
	for _, sandbox := range list.Items {
		name := sandbox.Metadata.Namespace + "/" + sandbox.Metadata.Name
		if _, err := client.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sandbox.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: stopping %s: %v\n", name, err)
			failed++
			continue
		}
		if _, err := client.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sandbox.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: removing %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Printf("removed pod sandbox %s\n", name)
	}
	if failed > 0 {
		return 1
	}
	return 0
}
