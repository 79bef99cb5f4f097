// Command etcd runs a single-member etcd on loopback for the local control plane.
//
// It accepts the few flags the local cluster needs and stops cleanly on SIGTERM/SIGINT.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func mustURL(raw string) url.URL {
	parsed, err := url.Parse(raw)
	if err != nil {
		log.Fatalf("etcd: bad URL %q: %v", raw, err)
	}
	return *parsed
}

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd's data (required)")
	clientURL := flag.String("listen-client-urls", "http://127.0.0.1:2379", "client URL to listen on and advertise")
	peerURL := flag.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL to listen on and advertise")
	quotaBytes := flag.Int64("quota-backend-bytes", 2<<30, "backend size quota in bytes")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("etcd: --data-dir is required")
	}

	cfg := embed.NewConfig()
	cfg.Name = "local"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{mustURL(*clientURL)}
	cfg.AdvertiseClientUrls = cfg.ListenClientUrls
	cfg.ListenPeerUrls = []url.URL{mustURL(*peerURL)}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes = *quotaBytes
	// The local cluster is throw-away: fsync on every write only slows tests down.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "warn"

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: start: %v", err)
	}
	select {
	case <-server.Server.ReadyNotify():
		log.Printf("etcd: ready on %s", *clientURL)
	case <-time.After(60 * time.Second):
		server.Close()
		log.Fatal("etcd: not ready after 60s")
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-server.Err():
		log.Fatalf("etcd: %v", err)
	case sig := <-signals:
		log.Printf("etcd: %s, stopping", sig)
		server.Close()
	}
}
