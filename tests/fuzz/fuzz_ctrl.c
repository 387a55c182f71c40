/* fuzz_ctrl.c: libFuzzer harness for control messages and the handshake. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ctrl.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[CTRL_MSG_MAX];

static int
str_eq(struct ctrl_str a, struct ctrl_str b)
{
	return (a.p == NULL) == (b.p == NULL) && a.len == b.len &&
	    (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static int
reg_eq(const struct ctrl_register *a, const struct ctrl_register *b)
{
	unsigned i;

	if (a->ex != b->ex || a->proxy_type != b->proxy_type ||
	    a->remote_port != b->remote_port ||
	    a->local_port != b->local_port || !str_eq(a->name, b->name) ||
	    !str_eq(a->subdomain, b->subdomain) ||
	    !str_eq(a->hostname, b->hostname) ||
	    !str_eq(a->basic_auth, b->basic_auth) ||
	    a->bandwidth != b->bandwidth || !str_eq(a->group, b->group) ||
	    a->proxy_protocol != b->proxy_protocol ||
	    a->n_allow_src != b->n_allow_src ||
	    !str_eq(a->description, b->description))
		return 0;
	for (i = 0; i < a->n_allow_src; i++)
		if (!str_eq(a->allow_src[i], b->allow_src[i]))
			return 0;
	return 1;
}

/* check_msg: what decoded (maybe with ETOOLONG or EUNSUPP) re-encodes. */
static void
check_msg(const uint8_t *data, size_t size, const struct ctrl_msg *m, int rc)
{
	struct ctrl_msg m2;
	int n;

	if ((rc == MG_ETOOLONG && m->type != CTRL_REGISTER) ||
	    (rc == MG_EUNSUPP && m->type != CTRL_REGISTER_EX))
		abort();
	/* Longer inputs do not fit a frame; encode rightly refuses them. */
	if (size > CTRL_MSG_MAX)
		return;
	n = ctrl_encode(m, out, sizeof(out));
	if (n <= 0 || (size_t)n > size)
		abort();
	/*
	 * Every layout but RegisterEx is canonical: the same bytes come
	 * back. RegisterEx options are written in tag order and skipped
	 * tags dropped, so there the decoded meaning must survive instead.
	 */
	if (rc == MG_ETOOLONG) {
		if (n != 6 + CTRL_NAME_MAX || memcmp(out, data, (size_t)n))
			abort();
	} else if (m->type != CTRL_REGISTER_EX) {
		if ((size_t)n != size || memcmp(out, data, size) != 0)
			abort();
	}
	if (ctrl_decode(out, (size_t)n, &m2) != 0 || m2.type != m->type)
		abort();
	if ((m->type == CTRL_REGISTER || m->type == CTRL_REGISTER_EX) &&
	    !reg_eq(&m->u.reg, &m2.u.reg))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctrl_hello h;
	struct ctrl_msg m;
	int rc, n;

	rc = ctrl_decode(data, size, &m);
	if (rc == 0 || rc == MG_ETOOLONG || rc == MG_EUNSUPP)
		check_msg(data, size, &m, rc);
	else if (rc != MG_EPROTO)
		abort();
	(void)ctrl_type_name(m.type);

	rc = ctrl_hello_decode(data, size, &h);
	if (rc == 0) {
		n = ctrl_hello_encode(&h, out, sizeof(out));
		if (n < 0 || (size_t)n != size || memcmp(out, data, size))
			abort();
	} else if (rc != MG_EPROTO && rc != MG_EUNSUPP) {
		abort();
	}
	return 0;
}
