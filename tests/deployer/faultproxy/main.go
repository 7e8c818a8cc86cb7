// faultproxy sits between a test's deploy-apps and the local cluster's apiserver and injects
// faults on command: a stalled TLS handshake, stalled requests, silenced or cut watches, error
// answers, latency, and a signal sent to a process a set time after a given request was answered.
// It serves a certificate it signs at start-up with the cluster's CA, so the client keeps
// verifying TLS. It asks nothing of its clients and uses the admin credentials upstream.
// Standard library only, so it builds offline.
//
// Usage: faultproxy -upstream https://127.0.0.1:6443 -ca-cert ca.crt -ca-key ca.key \
//
//	-client-cert admin.crt -client-key admin.key -ready FILE
//
// Once listening it writes "proxy=https://127.0.0.1:PORT" and "control=http://127.0.0.1:PORT"
// to FILE. Drive it with POST /faults (see Faults in faults.go), read GET /log.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address of the TLS proxy")
	controlAddr := flag.String("control", "127.0.0.1:0", "address of the control endpoint (plain HTTP)")
	upstreamURL := flag.String("upstream", "https://127.0.0.1:6443", "the apiserver")
	caCert := flag.String("ca-cert", "", "the cluster CA's certificate (PEM)")
	caKey := flag.String("ca-key", "", "the cluster CA's key (PEM), to sign the serving certificate")
	clientCert := flag.String("client-cert", "", "admin client certificate for the apiserver (PEM)")
	clientKey := flag.String("client-key", "", "its key (PEM)")
	ready := flag.String("ready", "", "file to write the two URLs to once listening")
	flag.Parse()
	if err := run(*listen, *controlAddr, *upstreamURL, *caCert, *caKey, *clientCert, *clientKey, *ready); err != nil {
		log.Fatalf("faultproxy: %v", err)
	}
}

func run(listen, controlAddr, upstreamURL, caCert, caKey, clientCert, clientKey, ready string) error {
	ca, err := tls.LoadX509KeyPair(caCert, caKey)
	if err != nil {
		return fmt.Errorf("the CA: %w", err)
	}
	serving, err := servingCert(ca)
	if err != nil {
		return err
	}
	admin, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		return fmt.Errorf("the client certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	upstream, err := url.Parse(upstreamURL)
	if err != nil {
		return err
	}
	p := newProxy(upstream, &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{admin}},
		MaxIdleConnsPerHost: 32,
		DisableCompression:  true,
	})

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	tlsLn := tls.NewListener(stallListener{ln, p}, &tls.Config{
		Certificates: []tls.Certificate{serving},
		ClientAuth:   tls.RequestClientCert, // only to log who called; not verified, not needed
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // one watch per connection, so a cut closes one watch
	})
	control, err := net.Listen("tcp", controlAddr)
	if err != nil {
		return err
	}
	if ready != "" {
		text := fmt.Sprintf("proxy=https://%s\ncontrol=http://%s\n", ln.Addr(), control.Addr())
		if err := os.WriteFile(ready+".tmp", []byte(text), 0o600); err != nil {
			return err
		}
		if err := os.Rename(ready+".tmp", ready); err != nil {
			return err
		}
	}
	p.logf("proxy https://%s -> %s, control http://%s", ln.Addr(), upstream, control.Addr())
	errs := make(chan error, 2)
	go func() { errs <- http.Serve(control, p.control()) }()
	go func() {
		server := &http.Server{Handler: p, ErrorLog: log.New(logWriter{p}, "", 0),
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
		errs <- server.Serve(tlsLn)
	}()
	return <-errs
}

// servingCert makes a certificate for 127.0.0.1 and localhost, signed by the CA.
func servingCert(ca tls.Certificate) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "faultproxy"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.Leaf, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing the serving certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
