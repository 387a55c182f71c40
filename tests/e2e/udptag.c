/*
 * udptag.c: a fast UDP "tag" service for the end-to-end flood test, so that
 * the local service is not the slowest part (a Python one is, and then the
 * kernel drops at its socket whatever mgrok delivers, flows alike).
 *
 * udptag PREFIX MAX_SECONDS: binds 127.0.0.1 on an ephemeral port and
 * prints "port N"; answers each datagram with "HOST:PORT|" + the datagram
 * (the sender as seen here), except those starting with PREFIX, which are
 * only counted. On SIGTERM, or after MAX_SECONDS, prints "discarded D
 * answered A" and exits.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 2048

static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	static char bufs[BATCH][SLOT], out[SLOT + 64];
	struct sockaddr_in sa = { .sin_family = AF_INET }, from[BATCH];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	socklen_t sl = sizeof(sa);
	unsigned long long discarded = 0, answered = 0;
	const char *prefix;
	size_t plen;
	time_t end;
	int fd, big = 8 << 20;

	if (argc != 3) {
		fprintf(stderr, "usage: udptag PREFIX MAX_SECONDS\n");
		return 2;
	}
	prefix = argv[1];
	plen = strlen(prefix);
	end = time(NULL) + atoi(argv[2]);
	signal(SIGTERM, on_term);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_DGRAM, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
		perror("udptag");
		return 1;
	}
	/* as big as root may make it, else as big as rmem_max allows */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) != 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	printf("port %u\n", ntohs(sa.sin_port));
	fflush(stdout);
	while (!stop && time(NULL) < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n;

		if (poll(&p, 1, 200) <= 0)
			continue;
		memset(msgs, 0, sizeof(msgs));
		for (int i = 0; i < BATCH; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = SLOT;
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			msgs[i].msg_hdr.msg_name = &from[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
		}
		n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
		for (int i = 0; i < n; i++) {
			size_t len = msgs[i].msg_len;
			char host[INET_ADDRSTRLEN];
			int h;

			if (len >= plen && memcmp(bufs[i], prefix, plen) == 0) {
				discarded++;
				continue;
			}
			inet_ntop(AF_INET, &from[i].sin_addr, host, sizeof(host));
			h = snprintf(out, 64, "%s:%u|", host,
			    ntohs(from[i].sin_port));
			memcpy(out + h, bufs[i], len);
			if (sendto(fd, out, (size_t)h + len, 0,
				(struct sockaddr *)&from[i],
				sizeof(from[i])) >= 0)
				answered++;
		}
	}
	printf("discarded %llu answered %llu\n", discarded, answered);
	return 0;
}
