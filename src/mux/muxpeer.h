/* muxpeer.h: a raw smux peer (no control protocol) to check the mux layer
 * against other smux implementations (`mgrok mux-peer`, src/cli). */
#ifndef MG_MUXPEER_H
#define MG_MUXPEER_H

#include <stddef.h>
#include <stdint.h>

struct muxpeer_opts {
	const char *listen_at;  /* serve every stream the peer opens:
				   smuxpeer's request protocol (E/U/D), or
				   with raw_echo a raw echo */
	const char *connect_to; /* open nstreams streams, send bytes random
				   bytes on each, check the echo */
	unsigned nstreams;
	size_t bytes;
	uint8_t version;        /* the version a connecting peer speaks;
				   0 = 2 */
	unsigned max_time_s;    /* give up (connect) or stop (listen) */
	int raw_echo;
};

/*
 * muxpeer_run: run the peer on its own event loop until it is done or
 * max_time_s passed. 0 when every stream's echo was checked (connect) or
 * the time is up (listen); MG_EINVAL (bad options), MG_EIO (cannot listen
 * or connect), MG_EPROTO (an echo differed) or MG_ETIMEDOUT, with the
 * reason in err.
 */
int muxpeer_run(const struct muxpeer_opts *o, char *err, size_t errcap);

#endif
