/* muxpeer_cmd.c: `mgrok mux-peer`: options for muxpeer_run (src/mux). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mux/muxpeer.h"
#include "util/err.h"
#include "util/log.h"

static void
muxpeer_usage(FILE *f)
{
	fputs("usage: mgrok mux-peer --listen HOST:PORT | --connect HOST:PORT "
	      "[options]\n"
	      "A raw smux peer (no mgrok control protocol), to check the mux "
	      "layer\nagainst other smux implementations.\n"
	      "  --listen HOST:PORT    serve every stream the peer opens "
	      "(smuxpeer's\n"
	      "                        request protocol, or a raw echo with "
	      "--serve echo)\n"
	      "  --connect HOST:PORT   open --streams streams, send --bytes "
	      "random bytes\n"
	      "                        on each, check the echo\n"
	      "  --streams N           (8)\n"
	      "  --bytes B             per stream (1048576)\n"
	      "  --serve proto|echo    what --listen serves (proto)\n"
	      "  --smuxver 1|2         the version --connect speaks (2)\n"
	      "  --max-time S          give up, or stop listening, after S "
	      "seconds (60)\n"
	      "  --log-level L         error|warn|info|debug\n",
	    f);
}

int
cli_muxpeer(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "streams", required_argument, NULL, 'n' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "smuxver", required_argument, NULL, 'v' },
		{ "max-time", required_argument, NULL, 't' },
		{ "serve", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct muxpeer_opts o;
	char err[300];
	int ch, rc;

	memset(&o, 0, sizeof(o));
	o.nstreams = 8;
	o.bytes = 1 << 20;
	o.version = 2;
	o.max_time_s = 60;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': o.listen_at = optarg; break;
		case 'c': o.connect_to = optarg; break;
		case 'n': o.nstreams = (unsigned)atoi(optarg); break;
		case 'b': o.bytes = (size_t)atol(optarg); break;
		case 'v': o.version = (uint8_t)atoi(optarg); break;
		case 't': o.max_time_s = (unsigned)atoi(optarg); break;
		case 's':
			if (strcmp(optarg, "echo") != 0 &&
			    strcmp(optarg, "proto") != 0) {
				fprintf(stderr, "mgrok: mux-peer: --serve: "
						"expected proto or echo\n");
				return 2;
			}
			o.raw_echo = strcmp(optarg, "echo") == 0;
			break;
		case 'L': {
			enum log_level lv;
			if (log_level_parse(optarg, &lv) == 0) {
				log_set_level(lv);
				break;
			}
			fprintf(stderr, "mgrok: mux-peer: --log-level: "
					"error, warn, info or debug\n");
			return 2;
		}
		case 'h':
			muxpeer_usage(stdout);
			return 0;
		default:
			fprintf(stderr, "mgrok: mux-peer: %s: %s\n",
			    argv[optind - 1], ch == ':' ? "needs a value" :
							  "unknown option");
			muxpeer_usage(stderr);
			return 2;
		}
	}
	rc = muxpeer_run(&o, err, sizeof(err));
	if (rc == 0 && o.connect_to) {
		printf("mux-peer: %u streams ok\n", o.nstreams);
		return 0;
	}
	if (rc == 0)
		return 0;
	fprintf(stderr, "mgrok: mux-peer: %s\n", err);
	return rc == MG_EINVAL ? 2 : 1;
}
