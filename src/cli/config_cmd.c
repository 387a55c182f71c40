/* config_cmd.c: `mgrok config check|example`, and how a load's
 * diagnostics are printed. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/conf.h"

void
cli_print_diag(const struct conf_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "mgrok: %s%s\n",
		    d->v[i].is_error ? "" : "warning: ", d->v[i].text);
	if (d->dropped)
		fprintf(stderr, "mgrok: ... and %zu more\n", d->dropped);
}

static void
config_usage(FILE *f)
{
	fputs("usage: mgrok config check [--server|--client] FILE|-\n"
	      "       mgrok config example client|server\n"
	      "  check     every problem of FILE with its line and column; "
	      "exit 0 when\n"
	      "            there is none, 1 otherwise (a server or a client "
	      "file by its\n"
	      "            keys, or as --server / --client says)\n"
	      "  example   a complete, commented config file on stdout\n",
	    f);
}

static int
config_check(int argc, char **argv)
{
	struct conf_diag d;
	const char *path = NULL;
	int server = -1, is_server = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--server") == 0)
			server = 1;
		else if (strcmp(argv[i], "--client") == 0)
			server = 0;
		else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			/* "-" alone is stdin */
			fprintf(stderr, "mgrok: config check: %s: unknown "
			    "option\n", argv[i]);
			return 2;
		} else if (path == NULL)
			path = argv[i];
		else {
			fprintf(stderr, "mgrok: config check: one file at "
			    "a time (got \"%s\")\n", argv[i]);
			return 2;
		}
	}
	if (path == NULL) {
		config_usage(stderr);
		return 2;
	}
	conf_diag_init(&d);
	rc = conf_check_file(path, server, &is_server, &d);
	cli_print_diag(&d);
	if (rc == 0)
		printf("%s: ok (%s file)\n", path,
		    is_server ? "server" : "client");
	else
		fprintf(stderr, "mgrok: %s: %zu error%s\n", path, d.nerrors,
		    d.nerrors == 1 ? "" : "s");
	conf_diag_free(&d);
	return rc == 0 ? 0 : 1;
}

int
cli_config(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return config_check(argc - 1, argv + 1);
	if (argc == 3 && strcmp(argv[1], "example") == 0 &&
	    (strcmp(argv[2], "client") == 0 || strcmp(argv[2], "server") == 0)) {
		conf_example(stdout, strcmp(argv[2], "server") == 0);
		return 0;
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0)) {
		config_usage(stdout);
		return 0;
	}
	config_usage(stderr);
	return 2;
}
