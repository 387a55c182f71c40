/* connect.h: `mgrok connect`, the client of the stream proxy. */
#ifndef MG_CONNECT_H
#define MG_CONNECT_H

#include <stdint.h>

struct tls_client_opts;

/* connect_main: argv[0] is "connect"; returns the exit code. */
int connect_main(int argc, char **argv);

/*
 * connect_udp_main: `mgrok connect --udp`: listen on UDP lhost:lport; each
 * local source address gets its own DTLS 1.2 connection to the server's
 * UDP port sport (ALPN not used), whose first record is the 274-byte
 * header naming dhost:dport; then one record per datagram both ways.
 * Runs until SIGINT/SIGTERM; returns the exit code. (src/client/cudp.c)
 */
int connect_udp_main(const char *shost, uint16_t sport, const char *dhost,
    uint16_t dport, const char *lhost, uint16_t lport,
    const struct tls_client_opts *to);

#endif
