/* main.c: the mgrok command: subcommands and process set-up. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "client/client.h"
#include "conf/conf.h"
#include "proto/ctrl.h"
#include "server/server.h"
#include "tls/tls.h"
#include "util/fwatch.h"
#include "util/log.h"
#include "util/loop.h"

/* a save is a burst of events (write, rename, chmod): one reload after */
#define FILE_SETTLE_MS 200
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
	      "  start [NAME...]        run the tunnels of a config file "
	      "(--config FILE)\n"
	      "  config check FILE      check a config file (every problem, "
	      "with its line)\n"
	      "  config example client|server  a commented example config "
	      "file\n"
	      "  connect --to H:P ...   reach H:P through the server's stream "
	      "proxy\n"
	      "  certs --out DIR --hosts H1,H2  make a CA, server and client "
	      "certificate\n"
	      "  token add|list|rotate|hash  the server file's tokens "
	      "(secrets stored\n"
	      "                         as a hash; the file edited in place)\n"
	      "  mux-peer ...           a raw smux peer, to test the mux layer\n"
	      "  man                    print the man page mgrok(1) (roff)\n"
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

/* What a reload needs: the command line to read again (with the files it
 * names) and the configuration in use. */
struct server_run {
	struct server *srv;
	struct server_conf *cf;
	int argc;
	char **argv;
};

/* Parse, validate, plan, apply (SIGHUP, or the file saved): a
 * configuration that does not load or apply changes nothing. */
static int
server_reload_now(struct server_run *r, const char *why, char *err,
    size_t errcap)
{
	struct server_conf *ncf = calloc(1, sizeof(*ncf));
	struct conf_diag d;
	int rc;

	log_info("%s: reloading the configuration", why);
	if (ncf == NULL) {
		snprintf(err, errcap, "out of memory");
		return -1;
	}
	conf_diag_init(&d);
	rc = conf_server_load(ncf, r->argc, r->argv, &d);
	cli_print_diag(&d);
	snprintf(err, errcap, "the configuration does not load");
	for (size_t i = 0; i < d.n; i++)
		if (d.v[i].is_error) {
			snprintf(err, errcap, "the configuration does not "
			    "load: %s", d.v[i].text);
			break;
		}
	conf_diag_free(&d);
	if (rc != 0) {
		log_error("reload refused: the configuration does not load "
			  "(above); the running one stays");
		server_reload_failed(r->srv, err);
		conf_server_free(ncf);
		free(ncf);
		return -1;
	}
	if (server_apply(r->srv, ncf, err, errcap) < 0) {
		log_error("reload refused, the running configuration stays: "
			  "%s",
		    err);
		conf_server_free(ncf);
		free(ncf);
		return -1;
	}
	conf_server_free(r->cf);
	free(r->cf);
	r->cf = ncf;
	log_info("reload applied");
	return 0;
}

/* POST /api/v1/reload on the admin listener */
static int
on_server_api_reload(void *arg, char *err, size_t errcap)
{
	return server_reload_now(arg, "admin API", err, errcap);
}

static void
on_server_hup(evutil_socket_t sig, short what, void *arg)
{
	char err[512];

	server_reload_now(arg, "SIGHUP", err, sizeof(err));
}

static void
on_server_file(void *arg)
{
	struct server_run *r = arg;
	char err[512];

	server_reload_now(r, r->cf->config_file ? r->cf->config_file :
	    "the config file", err, sizeof(err));
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
	struct server_run run = { NULL, NULL, argc, argv };
	struct server_conf *cf = calloc(1, sizeof(*cf));
	struct fwatch *watch = NULL;
	struct event_base *base;
	struct conf_diag d;
	int rc;

	if (cf == NULL)
		return 1;
	conf_diag_init(&d);
	rc = conf_server_load(cf, argc, argv, &d);
	cli_print_diag(&d);
	conf_diag_free(&d);
	if (rc != 0) {
		if (rc > 0)
			conf_server_usage(stdout);
		conf_server_free(cf);
		free(cf);
		return rc > 0 ? 0 : 2;
	}
	run.cf = cf;
	log_set_level(cf->log_level);
	if (cf->cluster[0] && cf->cluster_secret[0])
		/* a node that forwards: visitors' streams another node
		 * forwarded queue megabytes here on their way to the agent;
		 * trimmed back after every burst, the heap cost a page fault
		 * per 4 KiB (bench/cluster.sh: forwarded throughput about
		 * 0.55x of the direct path with 2 MiB, 0.68-0.76x with 16) */
		mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
	if (cf->config_file)
		log_info("settings from %s and the command line",
		    cf->config_file);
	raise_fd_limit();
	base = new_base();
	if ((run.srv = server_new(base, cf)) == NULL) {
		event_base_free(base);
		conf_server_free(cf);
		free(cf);
		return 1;
	}
	server_set_reload(run.srv, on_server_api_reload, &run);
	sigs[0] = evsignal_new(base, SIGINT, on_server_stop, run.srv);
	sigs[1] = evsignal_new(base, SIGTERM, on_server_stop, run.srv);
	sigs[2] = evsignal_new(base, SIGHUP, on_server_hup, &run);
	for (int i = 0; i < 3; i++)
		event_add(sigs[i], NULL);
	/* the file saved is a reload too, however the editor saved it */
	if (cf->config_file && (watch = fwatch_new(base, cf->config_file,
	    FILE_SETTLE_MS, on_server_file, &run)) == NULL)
		log_warn("cannot watch %s for changes (%s): reload with "
			 "SIGHUP",
		    cf->config_file, strerror(errno));
	if (cf->busy_poll_us > 0)
		log_info("busy polling for %u us after each I/O (--busy-poll)",
		    cf->busy_poll_us);
	log_defer_start(base);
	loop_run(base, cf->busy_poll_us);
	log_defer_stop();
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	fwatch_free(watch);
	server_log_summary(run.srv);
	server_free(run.srv);
	event_base_free(base);
	conf_server_free(run.cf);
	free(run.cf);
	return 0;
}

static void
on_forwarding(void *arg, const char *url, const char *local_host,
    uint16_t local_port, const char *name)
{
	printf("Forwarding %s -> %s:%u (%s)\n", url, local_host, local_port,
	    name);
	fflush(stdout);
}

static void
on_client_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d", (int)sig);
	client_shutdown(arg);
}

/* The exit summary: one line of totals, one per tunnel. */
static void
print_client_summary(const struct client *c)
{
	uint64_t total = 0, in = 0, out = 0, refused = 0;
	unsigned active = 0;
	struct client_tunnel_stats t;

	for (size_t i = 0; i < client_ntunnels(c); i++) {
		client_tunnel_stats(c, i, &t);
		total += t.streams;
		active += t.active;
		in += t.bytes_in;
		out += t.bytes_out;
	}
	refused = client_streams_refused(c);
	fprintf(stderr,
	    "mgrok: summary: uptime %llu s, %llu connections to the server, "
	    "%llu streams (%u active, %llu refused), %llu bytes in, "
	    "%llu bytes out\n",
	    (unsigned long long)(client_uptime_ms(c) / 1000),
	    (unsigned long long)client_sessions(c), (unsigned long long)total,
	    active, (unsigned long long)refused, (unsigned long long)in,
	    (unsigned long long)out);
	for (size_t i = 0; i < client_ntunnels(c); i++) {
		client_tunnel_stats(c, i, &t);
		if (t.url[0] == '\0')
			continue;
		if (t.type == PROXY_UDP)
			fprintf(stderr,
			    "mgrok:   %s -> %s:%u: %llu flows (%u active); "
			    "in %llu datagrams, %llu bytes, %llu dropped; "
			    "out %llu datagrams, %llu bytes, %llu dropped\n",
			    t.url, t.local_host, t.local_port,
			    (unsigned long long)t.streams, t.active,
			    (unsigned long long)t.dg.pkts_in,
			    (unsigned long long)t.dg.bytes_in,
			    (unsigned long long)t.dg.drops_in,
			    (unsigned long long)t.dg.pkts_out,
			    (unsigned long long)t.dg.bytes_out,
			    (unsigned long long)t.dg.drops_out);
		else if (t.type == PROXY_HTTP)
			fprintf(stderr,
			    "mgrok:   %s -> %s:%u: %llu requests (%llu 2xx, "
			    "%llu 3xx, %llu 4xx, %llu 5xx), %llu bytes in, "
			    "%llu bytes out, latency min %.1f avg %.1f max "
			    "%.1f ms\n",
			    t.url, t.local_host, t.local_port,
			    (unsigned long long)t.http.requests,
			    (unsigned long long)t.http.by_class[2],
			    (unsigned long long)t.http.by_class[3],
			    (unsigned long long)t.http.by_class[4],
			    (unsigned long long)t.http.by_class[5],
			    (unsigned long long)t.bytes_in,
			    (unsigned long long)t.bytes_out,
			    t.http.lat_min_us / 1000.0,
			    t.http.requests ? t.http.lat_sum_us / 1000.0 /
				(double)t.http.requests : 0.0,
			    t.http.lat_max_us / 1000.0);
		else
			fprintf(stderr,
			    "mgrok:   %s -> %s:%u: %llu streams, %llu bytes "
			    "in, %llu bytes out\n",
			    t.url, t.local_host, t.local_port,
			    (unsigned long long)t.streams,
			    (unsigned long long)t.bytes_in,
			    (unsigned long long)t.bytes_out);
	}
}

struct client_run {
	struct client *c;
	struct client_conf *cf;
	int argc;
	char **argv;
};

/* Parse, validate, plan, apply (SIGHUP, or the file saved): tunnels
 * change live, the session stays; a configuration that does not load
 * changes nothing. */
static void
client_reload_now(struct client_run *r, const char *why)
{
	struct client_conf *ncf = calloc(1, sizeof(*ncf));
	struct conf_diag d;
	char err[512];
	int rc;

	log_info("%s: reloading the configuration", why);
	if (ncf == NULL)
		return;
	conf_diag_init(&d);
	rc = conf_client_load(ncf, r->argc, r->argv, &d);
	cli_print_diag(&d);
	conf_diag_free(&d);
	if (rc != 0) {
		log_error("reload refused: the configuration does not load "
			  "(above); the running one stays");
		client_reload_failed(r->c, "the configuration does not load");
		conf_client_free(ncf);
		free(ncf);
		return;
	}
	if (client_apply(r->c, ncf, err, sizeof(err)) < 0) {
		log_error("reload refused, the running configuration stays: "
			  "%s",
		    err);
		conf_client_free(ncf);
		free(ncf);
		return;
	}
	conf_client_free(r->cf);
	free(r->cf);
	r->cf = ncf;
}

static void
on_client_hup(evutil_socket_t sig, short what, void *arg)
{
	client_reload_now(arg, "SIGHUP");
}

static void
on_client_file(void *arg)
{
	struct client_run *r = arg;

	client_reload_now(r, r->cf->config_file ? r->cf->config_file :
	    "the config file");
}

static int
run_client(int argc, char **argv)
{
	struct client_conf *cf = calloc(1, sizeof(*cf));
	struct client_hooks hooks = { on_forwarding, NULL };
	struct event *sig_int = NULL, *sig_term = NULL, *sig_hup = NULL;
	struct client_run run = { NULL, NULL, argc, argv };
	struct fwatch *watch = NULL;
	struct event_base *base;
	struct client *c;
	struct conf_diag d;
	int rc;

	if (cf == NULL)
		abort();
	conf_diag_init(&d);
	rc = conf_client_load(cf, argc, argv, &d);
	cli_print_diag(&d);
	conf_diag_free(&d);
	if (rc != 0) {
		if (rc > 0)
			conf_client_usage(stdout, argv[0]);
		conf_client_free(cf);
		free(cf);
		return rc > 0 ? 0 : 2;
	}
	log_set_level(cf->log_level);
	if (cf->config_file)
		log_info("settings from %s and the command line",
		    cf->config_file);
	base = new_base();
	if ((c = client_new(base, cf, &hooks)) == NULL) {
		rc = 1;
	} else {
		if (cf->busy_poll_us > 0)
			log_info("busy polling for %u us after each I/O "
			    "(--busy-poll)", cf->busy_poll_us);
		run.c = c;
		run.cf = cf;
		sig_int = evsignal_new(base, SIGINT, on_client_signal, c);
		sig_term = evsignal_new(base, SIGTERM, on_client_signal, c);
		sig_hup = evsignal_new(base, SIGHUP, on_client_hup, &run);
		event_add(sig_int, NULL);
		event_add(sig_term, NULL);
		event_add(sig_hup, NULL);
		if (cf->config_file && (watch = fwatch_new(base,
		    cf->config_file, FILE_SETTLE_MS, on_client_file, &run)) ==
		    NULL)
			log_warn("cannot watch %s for changes (%s): reload "
				 "with SIGHUP",
			    cf->config_file, strerror(errno));
		log_defer_start(base);
		loop_run(base, cf->busy_poll_us);
		log_defer_stop();
		print_client_summary(c);
		rc = client_exit_code(c);
		event_free(sig_int);
		event_free(sig_term);
		event_free(sig_hup);
		fwatch_free(watch);
		client_free(c);
		cf = run.cf;
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
	    strcmp(cmd, "client") == 0 || strcmp(cmd, "start") == 0)
		return run_client(argc - 1, argv + 1);
	if (strcmp(cmd, "config") == 0)
		return cli_config(argc - 1, argv + 1);
	if (strcmp(cmd, "man") == 0) {
		conf_man(stdout, MGROK_VERSION);
		return 0;
	}
	if (strcmp(cmd, "connect") == 0)
		return cli_connect(argc - 1, argv + 1);
	if (strcmp(cmd, "certs") == 0)
		return cli_certs(argc - 1, argv + 1);
	if (strcmp(cmd, "token") == 0)
		return cli_token(argc - 1, argv + 1);
	if (strcmp(cmd, "status") == 0)
		return cli_status(argc - 1, argv + 1);
	if (strcmp(cmd, "mux-peer") == 0)
		return cli_muxpeer(argc - 1, argv + 1);
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
