/* connect.h: the client of the stream proxy (`mgrok connect`; its options
 * and process set-up are in src/cli/connect_cmd.c). */
#ifndef MG_CONNECT_H
#define MG_CONNECT_H

#include <stddef.h>
#include <stdint.h>

#include "tls/tls.h"

struct event_base;
struct connector;
struct cudp;

struct connect_opts {
	const char *shost;   /* the server */
	uint16_t sport;
	const char *dhost;   /* --to */
	uint16_t dport;
	const char *lhost;   /* --listen ("" = all) */
	uint16_t lport;
	struct tls_client_opts tls; /* alpn is set here */
};

/*
 * connector_new: listen on TCP lhost:lport on base; each connection gets
 * its own TLS connection to the server (ALPN mgrok-stream/1) that starts
 * with the header naming dhost:dport. NULL with the reason in err. Logs
 * why each connection ended, and a hint when the server closed one without
 * a byte back (a refusal: PROTOCOL 6 sends no reply). Free with
 * connector_free (ends every connection).
 */
struct connector *connector_new(struct event_base *base,
    const struct connect_opts *o, char *err, size_t errcap);
/* connector_local_addr: the address listened on, "a.b.c.d:port". */
const char *connector_local_addr(const struct connector *k, char *buf,
    size_t cap);
void connector_stats(const struct connector *k, uint64_t *conns,
    uint64_t *failed);
void connector_free(struct connector *k);

/*
 * cudp_new: `connect --udp`: listen on UDP lhost:lport; each local source
 * address gets its own DTLS 1.2 connection to the server's UDP port sport
 * (ALPN not used), whose first record is the 274-byte header naming
 * dhost:dport; then one record per datagram both ways. NULL with the
 * reason in err. Free with cudp_free (closes every flow). (cudp.c)
 */
struct cudp *cudp_new(struct event_base *base, const struct connect_opts *o,
    char *err, size_t errcap);
const char *cudp_local_addr(const struct cudp *u, char *buf, size_t cap);

struct cudp_stats {
	uint64_t flows, failed, up_pkts, down_pkts, drops, icmp;
};
void cudp_stats(const struct cudp *u, struct cudp_stats *st);
void cudp_free(struct cudp *u);

#endif
