// smuxpeer: the Go xtaci/smux peer the e2e interop tests (tests/e2e/test_interop.py)
// run against `mgrok mux-peer`, built offline from Debian's golang-go and
// golang-github-xtaci-smux-dev (`make build/smuxpeer`).
//
// -mode server: listens on -listen, runs an smux server session (protocol
// version -smuxver) on every accepted connection and echoes every byte of every
// stream back until EOF.
//
// -mode client: dials -connect once, runs an smux client session, opens -streams
// streams and runs -test on each, in the request protocol `mgrok mux-peer
// --listen` serves:
//
//	request = op (1 byte) | length (8 bytes, big endian)
//	op 'E' echo:   the client sends length bytes, the server sends them back
//	op 'U' upload: the client sends length bytes, the server discards them
//	               and acknowledges with length (8 bytes, big endian)
//
// -test echo: -rounds echo requests of -bytes random bytes per stream, each
// reply compared with what was sent. -test upload: 64 MiB upload requests per
// stream until -duration is over, each acknowledged with its exact length.
// The client prints one line ending in "ok=true" or "ok=false <error>" and
// exits 0 only when every stream passed. -maxtime bounds either mode.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"

	"github.com/xtaci/smux"
)

var (
	mode       = flag.String("mode", "", "server | client")
	smuxVer    = flag.Int("smuxver", 2, "smux protocol version (1 or 2)")
	listenAddr = flag.String("listen", "127.0.0.1:0", "server: listen address")
	serveMode  = flag.String("serve", "echo", "server: echo (raw echo of every stream until EOF; the only mode)")
	maxTime    = flag.Duration("maxtime", time.Minute, "server: exit after this long; client: fail after this long")
	connectTo  = flag.String("connect", "", "client: server address")
	test       = flag.String("test", "echo", "client: echo | upload")
	streams    = flag.Int("streams", 1, "client: number of concurrent streams")
	duration   = flag.Duration("duration", 2*time.Second, "client: upload run time")
	chunk      = flag.Int64("chunk", 64<<20, "client: bytes per upload request")
	echoBytes  = flag.Int64("bytes", 1<<20, "client: bytes per echo request")
	echoRounds = flag.Int("rounds", 3, "client: echo requests per stream")
)

func smuxConfig() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = *smuxVer
	if err := smux.VerifyConfig(c); err != nil {
		log.Fatalf("smux config: %v", err)
	}
	return c
}

// ---------------------------------------------------------------- server

func serveConn(c net.Conn) {
	sess, err := smux.Server(c, smuxConfig())
	if err != nil {
		c.Close()
		return
	}
	defer sess.Close()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		go func(s *smux.Stream) {
			defer s.Close()
			io.Copy(s, s)
		}(st)
	}
}

func runServer() {
	if *serveMode != "echo" {
		log.Fatalf("-serve %q: only echo is supported", *serveMode)
	}
	ln, err := net.Listen("tcp", *listenAddr)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	log.Printf("smuxpeer server: smuxver=%d serve=echo listening on %s (exits after %s)",
		*smuxVer, ln.Addr(), *maxTime)
	time.AfterFunc(*maxTime, func() { log.Printf("maxtime reached, exiting"); os.Exit(0) })
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("accept: %v", err)
		}
		go serveConn(c)
	}
}

// ---------------------------------------------------------------- client

func request(s net.Conn, op byte, n int64) error {
	var hdr [9]byte
	hdr[0] = op
	binary.BigEndian.PutUint64(hdr[1:], uint64(n))
	_, err := s.Write(hdr[:])
	return err
}

func echoStream(s net.Conn) (int64, error) {
	buf := make([]byte, *echoBytes)
	back := make([]byte, *echoBytes)
	var total int64
	for r := 0; r < *echoRounds; r++ {
		if _, err := rand.Read(buf); err != nil {
			return total, err
		}
		if err := request(s, 'E', int64(len(buf))); err != nil {
			return total, err
		}
		// write and read at once: the echo comes back while we send, and
		// neither side's window holds a whole large request
		werr := make(chan error, 1)
		go func() { _, err := s.Write(buf); werr <- err }()
		if _, err := io.ReadFull(s, back); err != nil {
			return total, err
		}
		if err := <-werr; err != nil {
			return total, err
		}
		if !bytes.Equal(buf, back) {
			return total, errors.New("echo mismatch")
		}
		total += int64(len(buf))
	}
	return total, nil
}

func uploadStream(s net.Conn, deadline time.Time) (int64, error) {
	buf := make([]byte, 256<<10)
	var ack [8]byte
	var total int64
	for time.Now().Before(deadline) {
		if err := request(s, 'U', *chunk); err != nil {
			return total, err
		}
		for left := *chunk; left > 0; {
			k := int64(len(buf))
			if k > left {
				k = left
			}
			if _, err := s.Write(buf[:k]); err != nil {
				return total, err
			}
			left -= k
		}
		if _, err := io.ReadFull(s, ack[:]); err != nil {
			return total, err
		}
		if got := int64(binary.BigEndian.Uint64(ack[:])); got != *chunk {
			return total, fmt.Errorf("upload acknowledged %d bytes of %d", got, *chunk)
		}
		total += *chunk
	}
	return total, nil
}

func runClient() error {
	time.AfterFunc(*maxTime, func() {
		fmt.Printf("smuxpeer client: ok=false time limit %s reached\n", *maxTime)
		os.Exit(3)
	})
	if *test != "echo" && *test != "upload" {
		return fmt.Errorf("unknown -test %q", *test)
	}
	c, err := net.DialTimeout("tcp", *connectTo, 5*time.Second)
	if err != nil {
		return err
	}
	sess, err := smux.Client(c, smuxConfig())
	if err != nil {
		return err
	}
	defer sess.Close()
	conns := make([]net.Conn, *streams)
	for i := range conns {
		if conns[i], err = sess.OpenStream(); err != nil {
			return fmt.Errorf("open stream %d: %v", i, err)
		}
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		firstEr error
		total   int64
	)
	deadline := time.Now().Add(*duration)
	for _, s := range conns {
		wg.Add(1)
		go func(s net.Conn) {
			defer wg.Done()
			var n int64
			var e error
			if *test == "echo" {
				n, e = echoStream(s)
			} else {
				n, e = uploadStream(s, deadline)
			}
			mu.Lock()
			total += n
			if e != nil && firstEr == nil {
				firstEr = e
			}
			mu.Unlock()
		}(s)
	}
	wg.Wait()
	for _, s := range conns {
		s.Close()
	}
	if firstEr == nil && total == 0 {
		firstEr = errors.New("no bytes went through")
	}
	fmt.Printf("smuxpeer client: smuxver=%d test=%s streams=%d bytes=%d ", *smuxVer, *test, *streams, total)
	return firstEr
}

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	switch *mode {
	case "server":
		runServer()
	case "client":
		if err := runClient(); err != nil {
			fmt.Printf("ok=false %v\n", err)
			os.Exit(1)
		}
		fmt.Println("ok=true")
	default:
		fmt.Fprintln(os.Stderr, "usage: smuxpeer -mode server|client [flags]; -h for flags")
		os.Exit(2)
	}
}
