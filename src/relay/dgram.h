/* dgram.h: datagrams on a UDP flow stream, "len u16 BE | payload"
 * (docs/protocol.md section 5). */
#ifndef MG_DGRAM_H
#define MG_DGRAM_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define DGRAM_MAX 65507 /* the largest UDP payload over IPv4 */

/* Per-direction counters of one flow or proxy. */
struct dgram_stats {
	uint64_t pkts_in, bytes_in, drops_in;   /* from the public side */
	uint64_t pkts_out, bytes_out, drops_out; /* towards the public side */
};

/*
 * dgram_take: point iov at up to max whole datagrams at the head of rx, in
 * place in rx's chains; a datagram split across chains is copied into
 * scratch (cap bytes; at least DGRAM_MAX). Adds the bytes they occupy in
 * rx (prefixes included) to *consumed: the caller drains that much once it
 * is done with iov, and changes nothing in rx before. Returns the number
 * taken (0 when none is complete), or MG_EPROTO (before any is taken) for
 * a length of 0 or above DGRAM_MAX.
 */
struct iovec;
int dgram_take(struct evbuffer *rx, uint8_t *scratch, size_t cap,
    struct iovec *iov, int max, size_t *consumed);

/*
 * dgram_send: send the n datagrams iov[0..n) on the UDP socket fd, to `to`
 * (NULL on a connected socket), all n of them, in one sendmmsg per 64
 * (one call each for nearly every batch a flow drains). Runs of datagrams of one
 * length (a shorter one may end a run) go as one UDP GSO send (UDP_SEGMENT)
 * while *gso is true (start it as dgram_gso_supported()): the kernel builds
 * the datagrams from one buffer,
 * about a third of the cost of sending them one by one. A socket or route
 * that refuses GSO clears *gso and the rest goes plain. Returns how many
 * datagrams the kernel took and adds their bytes to *bytes; the other
 * n - returned are dropped (a full socket buffer, an ICMP error from an
 * earlier datagram): the caller counts them as drops and keeps none.
 */
struct sockaddr;
int dgram_send(int fd, const struct sockaddr *to, unsigned tolen,
    struct iovec *iov, int n, int *gso, uint64_t *bytes);

/*
 * dgram_recv: receive up to n datagrams from fd (non-blocking) into buf,
 * slot bytes each (datagram i at buf + i * slot), with their sources in
 * from[i] and lengths in len[i]: one recvmmsg. Returns how many (0: none
 * now, or an error).
 */
struct sockaddr_storage;
int dgram_recv(int fd, uint8_t *buf, size_t slot, int n,
    struct sockaddr_storage *from, unsigned *fromlen, size_t *len);

/* dgram_addr_hash: FNV-1a of a source address's len bytes, for the
 * tables of UDP flows by visitor (mod the table size by the caller) */
uint32_t dgram_addr_hash(const struct sockaddr *sa, unsigned len);

/* dgram_gso_supported: whether the kernel has UDP GSO (Linux 4.18+); an
 * older one would ignore the segment size and send a run as one datagram. */
int dgram_gso_supported(void);

#endif
