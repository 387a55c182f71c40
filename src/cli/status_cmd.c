/* status_cmd.c: `mgrok status`: the running agent's tunnels and counters,
 * read from its inspector's /api/tunnels (docs/api.md), as a table. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "util/net.h"

#define STATUS_DEFAULT_ADDR "127.0.0.1:4040"
#define STATUS_TIMEOUT_S 3
#define STATUS_MAX (4u << 20) /* an answer larger than this is not ours */

static void
status_usage(FILE *f)
{
	fprintf(f,
	    "usage: mgrok status [--inspect-addr HOST:PORT]\n"
	    "  Prints the running agent's tunnels and counters, read from its\n"
	    "  inspector (default " STATUS_DEFAULT_ADDR ").\n");
}

/* GET path from host:port over HTTP/1.0; the body (malloc'd) or NULL. */
static char *
status_get(const char *host, uint16_t port, const char *path, int *status,
    char *err, size_t errcap)
{
	struct addrinfo hints, *ai = NULL, *a;
	struct timeval tv = { STATUS_TIMEOUT_S, 0 };
	char ps[8], req[600], *buf = NULL, *body = NULL, *hend;
	size_t len = 0, cap = 0;
	int fd = -1, rc;
	ssize_t n;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(ps, sizeof(ps), "%u", port);
	if ((rc = getaddrinfo(host, ps, &hints, &ai)) != 0) {
		snprintf(err, errcap, "cannot resolve %s: %s", host,
		    gai_strerror(rc));
		return NULL;
	}
	for (a = ai; a != NULL; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		snprintf(err, errcap, "%s", strerror(errno));
		return NULL;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s%s%s:%u\r\n"
	    "Accept: application/json\r\n\r\n", path, strchr(host, ':') ?
	    "[" : "", host, strchr(host, ':') ? "]" : "", port);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		snprintf(err, errcap, "cannot send: %s", strerror(errno));
		goto out;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 16384;
			if ((buf = realloc(buf, cap)) == NULL)
				abort();
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			snprintf(err, errcap, "no answer: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > STATUS_MAX) {
			snprintf(err, errcap, "the answer is too long");
			goto out;
		}
	}
	if (buf == NULL || (buf[len] = '\0', strncmp(buf, "HTTP/1.", 7)) ||
	    (hend = strstr(buf, "\r\n\r\n")) == NULL) {
		snprintf(err, errcap, "the answer is not HTTP");
		goto out;
	}
	*status = atoi(buf + 9);
	body = strdup(hend + 4);
out:
	free(buf);
	close(fd);
	return body;
}

static const char *
jget_s(json_t *o, const char *k, const char *def)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : def;
}

static unsigned long long
jget_u(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) && json_integer_value(v) > 0 ?
	    (unsigned long long)json_integer_value(v) : 0;
}

/* 1234567 -> "1.2 MB" style, for the table */
static const char *
human(unsigned long long n, char *buf, size_t cap)
{
	if (n < 10000)
		snprintf(buf, cap, "%llu", n);
	else if (n < 10000000ULL)
		snprintf(buf, cap, "%.1fk", (double)n / 1e3);
	else if (n < 10000000000ULL)
		snprintf(buf, cap, "%.1fM", (double)n / 1e6);
	else
		snprintf(buf, cap, "%.1fG", (double)n / 1e9);
	return buf;
}

int
cli_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "inspect-addr", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *addr = STATUS_DEFAULT_ADDR, *e;
	char host[256], err[512], b1[32], b2[32];
	uint16_t port;
	int ch, code = 0, rc = 1;
	char *body;
	json_t *j = NULL, *tunnels;
	json_error_t je;
	size_t i;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			addr = optarg;
			break;
		case 'h':
			status_usage(stdout);
			return 0;
		default:
			status_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mgrok: status: unexpected argument \"%s\"\n",
		    argv[optind]);
		status_usage(stderr);
		return 2;
	}
	if (net_split_hostport(addr, host, sizeof(host), &port, &e)) {
		fprintf(stderr, "mgrok: --inspect-addr %s: %s\n", addr, e);
		return 2;
	}
	body = status_get(host, port, "/api/tunnels", &code, err,
	    sizeof(err));
	if (body == NULL) {
		fprintf(stderr, "mgrok: no agent inspector at %s (%s): is "
		    "`mgrok` running with --inspect-addr?\n", addr, err);
		return 1;
	}
	if (code != 200 || (j = json_loads(body, 0, &je)) == NULL ||
	    !json_is_array(tunnels = json_object_get(j, "tunnels"))) {
		fprintf(stderr, "mgrok: %s did not answer like an mgrok "
		    "inspector (HTTP %d)\n", addr, code);
		goto out;
	}
	printf("%-16s %-5s %-40s %-22s %-10s %6s %6s %8s %8s\n", "NAME",
	    "TYPE", "PUBLIC", "LOCAL", "STATUS", "CONNS", "REQS", "IN", "OUT");
	for (i = 0; i < json_array_size(tunnels); i++) {
		json_t *t = json_array_get(tunnels, i);
		printf("%-16s %-5s %-40s %-22s %-10s %6llu %6llu %8s %8s\n",
		    jget_s(t, "name", "?"), jget_s(t, "type", "?"),
		    jget_s(t, "public_url", "-"), jget_s(t, "local", "?"),
		    jget_s(t, "status", "?"), jget_u(t, "connections"),
		    jget_u(t, "requests"), human(jget_u(t, "bytes_in"), b1,
		    sizeof(b1)), human(jget_u(t, "bytes_out"), b2,
		    sizeof(b2)));
		if (json_is_string(json_object_get(t, "error")))
			printf("  error: %s\n", jget_s(t, "error", ""));
	}
	if (i == 0)
		printf("(no tunnels)\n");
	rc = 0;
out:
	json_decref(j);
	free(body);
	return rc;
}
