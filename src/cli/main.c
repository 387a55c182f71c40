/* main.c: the mgrok command: subcommands and process set-up. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "client/client.h"
#include "client/connect.h"
#include "conf/conf.h"
#include "mux/muxpeer.h"
#include "server/server.h"
#include "tls/tls.h"
#include "util/log.h"
#include "util/loop.h"

#define MGROK_VERSION "0.1.0"

static void
usage(FILE *f)
{
	fputs("usage: mgrok COMMAND [options]\n"
	      "  server                 run the tunnel server\n"
	      "  tcp [HOST:]PORT        expose a local TCP service\n"
	      "  udp [HOST:]PORT        expose a local UDP service\n"
	      "  http [HOST:]PORT       expose a local web service by host name\n"
	      "  tls [HOST:]PORT        expose a local TLS service by SNI\n"
	      "  client --local ...     expose several local services\n"
	      "  connect --to H:P ...   reach H:P through the server's stream "
	      "proxy\n"
	      "  certs --out DIR --hosts H1,H2  make a CA, server and client "
	      "certificate\n"
	      "  version                print the version\n"
	      "Run `mgrok COMMAND --help` for a command's options.\n",
	    f);
}

static struct event_base *
new_base(void)
{
	struct event_base *base = event_base_new();

	if (base == NULL) {
		fprintf(stderr, "mgrok: cannot create the event loop\n");
		exit(1);
	}
	return base;
}

static void
on_server_stop(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d", (int)sig);
	server_shutdown(arg);
}

static void
on_server_hup(evutil_socket_t sig, short what, void *arg)
{
	log_info("SIGHUP: reloading");
	server_reload(arg);
}

/* A server holds a descriptor per visitor and per tunnel: take all the
 * open files the hard limit allows, and say what that is. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = was;
	}
	log_info("open files: up to %llu (hard limit %llu)",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
}

static int
run_server(int argc, char **argv)
{
	struct event *sigs[3];
	struct server_conf cf;
	struct event_base *base;
	struct server *srv;
	int rc = conf_server_parse(&cf, argc, argv);

	if (rc != 0) {
		conf_server_free(&cf);
		return rc > 0 ? 0 : 2;
	}
	log_set_level(cf.log_level);
	raise_fd_limit();
	base = new_base();
	if ((srv = server_new(base, &cf)) == NULL) {
		event_base_free(base);
		conf_server_free(&cf);
		return 1;
	}
	sigs[0] = evsignal_new(base, SIGINT, on_server_stop, srv);
	sigs[1] = evsignal_new(base, SIGTERM, on_server_stop, srv);
	sigs[2] = evsignal_new(base, SIGHUP, on_server_hup, srv);
	for (int i = 0; i < 3; i++)
		event_add(sigs[i], NULL);
	if (cf.busy_poll_us > 0)
		log_info("busy polling for %u us after each I/O (--busy-poll)",
		    cf.busy_poll_us);
	log_defer_start(base);
	loop_run(base, cf.busy_poll_us);
	log_defer_stop();
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	server_log_summary(srv);
	server_free(srv);
	event_base_free(base);
	conf_server_free(&cf);
	return 0;
}

static int
run_client(int argc, char **argv)
{
	struct client_conf *cf = calloc(1, sizeof(*cf));
	struct event_base *base;
	struct client *c;
	int rc;

	if (cf == NULL)
		abort();
	rc = conf_client_parse(cf, argc, argv);
	if (rc != 0) {
		conf_client_free(cf);
		free(cf);
		return rc > 0 ? 0 : 2;
	}
	log_set_level(cf->log_level);
	base = new_base();
	if ((c = client_new(base, cf)) == NULL) {
		rc = 1;
	} else {
		if (cf->busy_poll_us > 0)
			log_info("busy polling for %u us after each I/O "
			    "(--busy-poll)", cf->busy_poll_us);
		log_defer_start(base);
		loop_run(base, cf->busy_poll_us);
		log_defer_stop();
		client_print_summary(c);
		rc = client_exit_code(c);
		client_free(c);
	}
	event_base_free(base);
	conf_client_free(cf);
	free(cf);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *cmd;

	/* a peer that goes away must not kill us mid-write */
	signal(SIGPIPE, SIG_IGN);
	/* the data path frees and reallocates 32-256 KiB chains all the
	 * time: keep them in the heap instead of a brk/mmap per chain */
	mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 2 * 1024 * 1024);
	setvbuf(stderr, NULL, _IOLBF, 0);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (strcmp(cmd, "server") == 0)
		return run_server(argc - 1, argv + 1);
	if (strcmp(cmd, "tcp") == 0 || strcmp(cmd, "udp") == 0 ||
	    strcmp(cmd, "http") == 0 || strcmp(cmd, "tls") == 0 ||
	    strcmp(cmd, "client") == 0)
		return run_client(argc - 1, argv + 1);
	if (strcmp(cmd, "connect") == 0)
		return connect_main(argc - 1, argv + 1);
	if (strcmp(cmd, "certs") == 0)
		return tls_certs_main(argc - 1, argv + 1);
	if (strcmp(cmd, "mux-peer") == 0)
		return muxpeer_main(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("mgrok %s (libevent %s)\n", MGROK_VERSION,
		    event_get_version());
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "mgrok: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
