/* fuzz_local.c: libFuzzer harness for what a user types as a local service
 * ([tcp:|udp:]HOST:PORT, PORT, scheme://HOST[:PORT][/]) and for the
 * classification of a probed server's first bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/probe.h"
#include "conf/conf.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[600];
	struct local_spec l;
	const char *err = NULL;
	int rc;

	(void)probe_classify(data, size < 16 ? size : 16);
	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	rc = conf_parse_local(s, &l, &err);
	if (rc == 0) {
		/* a parsed service always has a host and a port */
		if (l.host[0] == '\0' || l.port == 0 ||
		    memchr(l.host, '\0', sizeof(l.host)) == NULL)
			abort();
	} else if (rc != MG_EINVAL || err == NULL || err[0] == '\0') {
		abort(); /* every refusal says why */
	}
	return 0;
}
