/* connect_cmd.c: `mgrok connect`: options, the listening line, signals and
 * the summary around the stream-proxy client (src/client/connect.c). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "client/connect.h"
#include "util/log.h"
#include "util/net.h"

static void
connect_usage(FILE *f)
{
	fputs("usage: mgrok connect --server HOST:PORT --to HOST:PORT "
	      "--listen HOST:PORT [--udp]\n"
	      "       --tls-cert F --tls-key F [--tls-ca F | --tls-pin "
	      "sha256:HEX]\n"
	      "       [--tls-server-name N] [--log-level L]\n"
	      "Each local connection (or, with --udp, each local source "
	      "address) reaches\n--to through the server's stream proxy, "
	      "over TLS (DTLS) with a client certificate.\n",
	    f);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

int
cli_connect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "to", required_argument, NULL, 't' },
		{ "listen", required_argument, NULL, 'l' },
		{ "udp", no_argument, NULL, 'u' },
		{ "tls-ca", required_argument, NULL, 'a' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "tls-server-name", required_argument, NULL, 'n' },
		{ "tls-pin", required_argument, NULL, 'p' },
		{ "tls", no_argument, NULL, 'T' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct connect_opts co;
	const char *server = NULL, *dest = NULL, *listen_at = NULL, *err;
	char shost[256], dhost[256], lhost[256], why[600];
	char buf[NET_ADDRSTR_MAX];
	int o, udp = 0, rc = 1;
	enum log_level lvl = LOG_INFO;
	struct event_base *base = NULL;
	struct event *sig_int = NULL, *sig_term = NULL;
	struct connector *k = NULL;
	struct cudp *u = NULL;

	memset(&co, 0, sizeof(co));
	optind = 1;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (o) {
		case 's': server = optarg; break;
		case 't': dest = optarg; break;
		case 'l': listen_at = optarg; break;
		case 'u': udp = 1; break;
		case 'a': co.tls.ca = optarg; break;
		case 'c': co.tls.cert = optarg; break;
		case 'k': co.tls.key = optarg; break;
		case 'n': co.tls.server_name = optarg; break;
		case 'p': co.tls.pin = optarg; break;
		case 'T': break;
		case 'L':
			if (log_level_parse(optarg, &lvl)) {
				fprintf(stderr, "mgrok: --log-level: expected "
						"error, warn, info or debug\n");
				return 2;
			}
			break;
		case 'h':
			connect_usage(stdout);
			return 0;
		default:
			fprintf(stderr, "mgrok: connect: %s: %s\n",
			    argv[optind - 1], o == ':' ? "needs a value" :
							 "unknown option");
			connect_usage(stderr);
			return 2;
		}
	}
	log_set_level(lvl);
	if (server == NULL || dest == NULL || listen_at == NULL) {
		fprintf(stderr, "mgrok: connect: --server, --to and --listen "
				"are required\n");
		return 2;
	}
	if (net_split_hostport(server, shost, sizeof(shost), &co.sport,
	    &err) || shost[0] == '\0' || co.sport == 0) {
		fprintf(stderr, "mgrok: --server %s: %s\n", server,
		    err ? err : "expected HOST:PORT");
		return 2;
	}
	if (net_split_hostport(dest, dhost, sizeof(dhost), &co.dport, &err) ||
	    dhost[0] == '\0' || co.dport == 0) {
		fprintf(stderr, "mgrok: --to %s: %s\n", dest,
		    err ? err : "expected HOST:PORT");
		return 2;
	}
	if (net_split_hostport(listen_at, lhost, sizeof(lhost), &co.lport,
	    &err)) {
		fprintf(stderr, "mgrok: --listen %s: %s\n", listen_at, err);
		return 2;
	}
	if (co.tls.cert == NULL || co.tls.key == NULL) {
		fprintf(stderr, "mgrok: connect: the stream proxy needs a "
				"client certificate: --tls-cert and --tls-key\n");
		return 2;
	}
	co.shost = shost;
	co.dhost = dhost;
	co.lhost = lhost;
	if ((base = event_base_new()) == NULL) {
		fprintf(stderr, "mgrok: cannot create the event loop\n");
		return 1;
	}
	if (udp)
		u = cudp_new(base, &co, why, sizeof(why));
	else
		k = connector_new(base, &co, why, sizeof(why));
	if (u == NULL && k == NULL) {
		fprintf(stderr, "mgrok: %s\n", why);
		goto out;
	}
	sig_int = evsignal_new(base, SIGINT, on_signal, base);
	sig_term = evsignal_new(base, SIGTERM, on_signal, base);
	event_add(sig_int, NULL);
	event_add(sig_term, NULL);
	if (u)
		printf("Listening on %s (udp) -> %s via %s:%u (DTLS)\n",
		    cudp_local_addr(u, buf, sizeof(buf)), dest, shost,
		    co.sport);
	else
		printf("Listening on %s -> %s via %s\n",
		    connector_local_addr(k, buf, sizeof(buf)), dest, server);
	fflush(stdout);
	event_base_dispatch(base);
	if (u) {
		struct cudp_stats st;
		cudp_stats(u, &st);
		fprintf(stderr, "mgrok: summary: %llu flows (%llu failed), "
		    "%llu datagrams out, %llu back, %llu dropped, %llu ICMP "
		    "errors\n",
		    (unsigned long long)st.flows, (unsigned long long)st.failed,
		    (unsigned long long)st.up_pkts,
		    (unsigned long long)st.down_pkts,
		    (unsigned long long)st.drops, (unsigned long long)st.icmp);
	} else {
		uint64_t conns, failed;
		connector_stats(k, &conns, &failed);
		fprintf(stderr, "mgrok: summary: %llu connections (%llu "
		    "failed)\n", (unsigned long long)conns,
		    (unsigned long long)failed);
	}
	rc = 0;
out:
	/* flows and relays end before the loop they live on */
	cudp_free(u);
	connector_free(k);
	if (sig_int)
		event_free(sig_int);
	if (sig_term)
		event_free(sig_term);
	event_base_free(base);
	return rc;
}
