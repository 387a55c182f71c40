/* cudp.c: `mgrok connect --udp` (DTLS), not written yet. */
#include <stdio.h>

#include "client/connect.h"

int
connect_udp_main(const char *shost, uint16_t sport, const char *dhost,
    uint16_t dport, const char *lhost, uint16_t lport,
    const struct tls_client_opts *to)
{
	fprintf(stderr, "mgrok: connect --udp (DTLS) is not available yet\n");
	return 2;
}
