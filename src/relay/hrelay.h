/* hrelay.h: the client end of an HTTP tunnel's data stream (hrelay.c). */
#ifndef MG_HRELAY_H
#define MG_HRELAY_H

#include <stdint.h>

struct event_base;
struct mux_stream;
struct hrelay;

/* Per-tunnel HTTP counters, for the exit summary. */
struct http_cstats {
	uint64_t requests;
	uint64_t by_class[6];
	uint64_t lat_min_us, lat_max_us, lat_sum_us;
	unsigned active;
	/* bytes written to the local service, and read from it */
	uint64_t bytes_in, bytes_out;
};

/*
 * hrelay_new: relay between fd (connected to the local web service; the
 * relay owns it) and st (the relay takes it), logging "METHOD URL STATUS
 * REASON LATENCY" per request; host_rewrite, when not NULL, replaces each
 * request's Host (it must outlive the relay). stats may be NULL. done, when
 * not NULL, is called with done_arg as the relay ends, after its last use of
 * stats and host_rewrite (so their owner may free them then). The relay
 * frees itself when both directions are done or either fails; when a side
 * fails or the session dies, it resets fd (RST) rather than closing it in
 * order.
 */
struct hrelay *hrelay_new(struct event_base *base, int fd,
    struct mux_stream *st, const char *host_rewrite,
    struct http_cstats *stats, void (*done)(void *arg), void *done_arg);

#endif
