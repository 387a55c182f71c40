/*
 * health.h: a tunnel's health check, run by the agent (issue 15): probe
 * the local service every interval (a TCP connect, an HTTP GET whose
 * status must be in a range, or a TLS handshake), each probe bounded by
 * a timeout, at most one in flight; count the results in a row and report
 * the state's transitions (rise successes: up, fall failures: down) by
 * callback. It knows nothing of the session: the client tells the server
 * (HealthReport, docs/internals/protocol-ext.md).
 */
#ifndef MG_HEALTH_H
#define MG_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

struct addrinfo;
struct event_base;

enum health_state {
	HEALTH_UNKNOWN = -1, /* no decisive run of results yet */
	HEALTH_DOWN = 0,
	HEALTH_UP = 1,
};

/* health_state_name: "up", "down" or "unknown" (static). */
const char *health_state_name(int state);

/* ---- the pure parts (unit-tested) ---- */

/* Results in a row, and the state they make. */
struct health_sm {
	int state;           /* enum health_state */
	unsigned ok_run, fail_run;
};

/* health_sm_init: unknown, no results. */
void health_sm_init(struct health_sm *sm);

/* health_sm_feed: one result (ok 1 or 0). rise successes in a row make a
 * tunnel that is not up up; fall failures in a row make one that is not
 * down down (so the first decisive run from unknown counts too). Returns
 * 1 when the state changed, else 0. */
int health_sm_feed(struct health_sm *sm, unsigned rise, unsigned fall,
    int ok);

/* health_expect_match: 1 when code is in one of h's expect ranges. */
int health_expect_match(const struct health_spec *h, int code);

/* health_status_line: the status code of an HTTP response that starts
 * p[0..len): "HTTP/1.x NNN ..." up to its line end. Returns 1 with *code
 * set when the line is whole, 0 when more bytes are needed, -1 when it is
 * not an HTTP status line. Never reads past len. */
int health_status_line(const uint8_t *p, size_t len, int *code);

/* ---- the checks ---- */

/* What to probe: ai (the tunnel's resolved local address, which must
 * outlive the check), host and port for an HTTP Host header, and the TLS
 * server name to send (NULL or an IP literal: none). Strings are
 * copied. */
struct health_target {
	const struct addrinfo *ai;
	const char *host;
	uint16_t port;
	const char *sni;
};

/*
 * Callbacks, from the event loop; neither may free the check.
 * - result: after every probe, ok 1 or 0, reason the failure's ("" when
 *   ok): "connection refused", "timeout after 2 s", "HTTP 503", "TLS
 *   handshake failed: ...", "closed before a status line".
 * - change: the state changed to state (HEALTH_UP or HEALTH_DOWN): streak
 *   results in a row made it; reason the last failure's (down) or "".
 */
struct health_cbs {
	void (*result)(void *arg, int ok, const char *reason);
	void (*change)(void *arg, int state, const char *reason,
	    unsigned streak);
};

struct health;

/*
 * health_new: start checking t as spec says (spec->type other than
 * HEALTH_OFF, its fields filled: conf_health_defaults); the first probe
 * starts at once from the loop. spec is copied. Returns the check (free
 * with health_free), or NULL with a reason in err (a TLS context that
 * cannot be made).
 */
struct health *health_new(struct event_base *base,
    const struct health_spec *spec, const struct health_target *t,
    const struct health_cbs *cbs, void *arg, char *err, size_t errcap);

/* health_free: stop (a probe in flight is abandoned, its socket closed);
 * no callback after. NULL is fine. */
void health_free(struct health *h);

/* health_state: enum health_state now. */
int health_state(const struct health *h);

/* health_reason: the last failure's reason ("" when none yet); owned by
 * h, valid until the next probe ends. */
const char *health_reason(const struct health *h);

/* health_checks: probes done so far. */
uint64_t health_checks(const struct health *h);

#endif
