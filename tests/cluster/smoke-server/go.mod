module deploy-apps.local/cluster-smoke-server

go 1.26
