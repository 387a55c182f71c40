/* fuzz_config.c: libFuzzer harness for the config file loader (YAML into
 * the option table), as a server file and as a client file: any bytes
 * give 0 or errors, never a crash, and a refusal always says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_diag d;

	/* ${VAR} reads the environment: a fixed one, so runs repeat */
	setenv("MGROK_FUZZ", "value", 1);
	for (int server = 0; server < 2; server++) {
		int rc;
		conf_diag_init(&d);
		rc = conf_check_buf("fuzz.yml", (const char *)data, size, server,
		    &d);
		if (rc != 0 && (rc != MG_EINVAL || d.nerrors == 0))
			abort(); /* every refusal says why */
		if (rc == 0 && d.nerrors != 0)
			abort();
		for (size_t i = 0; i < d.n; i++)
			if (d.v[i].text == NULL || d.v[i].text[0] == '\0')
				abort();
		conf_diag_free(&d);
	}
	return 0;
}
