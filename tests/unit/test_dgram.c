/* test_dgram.c: datagram framing on a flow stream (docs/protocol.md section 5)
 * and dgram_send over real loopback UDP sockets, GSO batches included. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <stdio.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "relay/dgram.h"
#include "util/err.h"

/* a connected pair of UDP sockets on 127.0.0.1 */
static void
udp_pair(int *tx, int *rx)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int big = 8 << 20;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*rx = socket(AF_INET, SOCK_DGRAM, 0);
	*tx = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(*rx >= 0 && *tx >= 0);
	assert_int_equal(bind(*rx, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(*rx, (struct sockaddr *)&a, &al), 0);
	setsockopt(*rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	assert_int_equal(connect(*tx, (struct sockaddr *)&a, sizeof(a)), 0);
}

/* datagram i: length lens[i], every byte (i * 7 + offset) & 0xff */
static uint8_t *
fill(const size_t *lens, int n, struct iovec *iov)
{
	size_t total = 0, off = 0;
	uint8_t *buf;

	for (int i = 0; i < n; i++)
		total += lens[i];
	buf = malloc(total);
	assert_non_null(buf);
	for (int i = 0; i < n; i++) {
		for (size_t k = 0; k < lens[i]; k++)
			buf[off + k] = (uint8_t)(i * 7 + k);
		iov[i].iov_base = buf + off;
		iov[i].iov_len = lens[i];
		off += lens[i];
	}
	return buf;
}

/* every datagram arrives once, whole, in order, as itself */
static void
expect_received(int rx, const size_t *lens, int n)
{
	static uint8_t got[65536];

	for (int i = 0; i < n; i++) {
		struct pollfd p = { .fd = rx, .events = POLLIN };
		ssize_t r;

		assert_int_equal(poll(&p, 1, 2000), 1);
		r = recv(rx, got, sizeof(got), MSG_DONTWAIT);
		assert_int_equal(r, (ssize_t)lens[i]);
		for (size_t k = 0; k < lens[i]; k++)
			if (got[k] != (uint8_t)(i * 7 + k))
				fail_msg("datagram %d byte %zu differs", i, k);
	}
	assert_int_equal(recv(rx, got, sizeof(got), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

static void
send_and_check(const size_t *lens, int n, int gso_in)
{
	if (gso_in && !dgram_gso_supported())
		skip(); /* a kernel before 4.18: GSO is never used there */

	struct iovec iov[256];
	int tx, rx, gso = gso_in;
	uint64_t bytes = 0, want = 0;
	uint8_t *buf;

	udp_pair(&tx, &rx);
	buf = fill(lens, n, iov);
	for (int i = 0; i < n; i++)
		want += lens[i];
	assert_int_equal(dgram_send(tx, NULL, 0, iov, n, &gso, &bytes), n);
	assert_int_equal(bytes, want);
	expect_received(rx, lens, n);
	free(buf);
	close(tx);
	close(rx);
}

/* runs of one length, shorter tails, a length change, big and tiny ones */
static void
test_send_runs_gso(void **state)
{
	static const size_t lens[] = { 1400, 1400, 1400, 1400, 700, 1400, 1400,
		1400, 1, 1, 1, 65507, 9000, 9000, 200, 300, 300 };

	(void)state;
	send_and_check(lens, (int)(sizeof(lens) / sizeof(lens[0])), 1);
}

/* the same without GSO */
static void
test_send_runs_plain(void **state)
{
	static const size_t lens[] = { 1400, 1400, 700, 1, 65507, 300, 300 };

	(void)state;
	send_and_check(lens, (int)(sizeof(lens) / sizeof(lens[0])), 0);
}

/* 64 datagrams of 1400 bytes: more than one GSO send's 64 KiB */
static void
test_send_many(void **state)
{
	size_t lens[64];

	(void)state;
	for (int i = 0; i < 64; i++)
		lens[i] = 1400;
	send_and_check(lens, 64, 1);
}

/* More than one sendmmsg holds (64): every datagram is sent, none is left
 * behind unsent and uncounted (dgram_send used to stop at 64 and return
 * 64, while its callers drained all they had passed). */
static void
test_send_beyond_one_batch(void **state)
{
	size_t lens[200];

	(void)state;
	for (int i = 0; i < 200; i++)
		lens[i] = 100 + (size_t)(i % 3); /* no GSO runs: 200 messages */
	send_and_check(lens, 200, 0);
	for (int i = 0; i < 200; i++)
		lens[i] = 512;
	send_and_check(lens, 200, 1);
}

/* an unconnected socket with a destination, as the server sends */
static void
test_send_to(void **state)
{
	static const size_t lens[] = { 1200, 1200, 1200, 50 };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct iovec iov[4];
	int tx, rx, gso = 1, plain;
	uint64_t bytes = 0;
	uint8_t *buf;

	(void)state;
	udp_pair(&tx, &rx);
	assert_int_equal(getsockname(rx, (struct sockaddr *)&ss, &sl), 0);
	close(tx);
	plain = socket(AF_INET, SOCK_DGRAM, 0);
	buf = fill(lens, 4, iov);
	assert_int_equal(dgram_send(plain, (struct sockaddr *)&ss, sl, iov, 4,
			     &gso, &bytes),
	    4);
	assert_int_equal(bytes, 3650);
	expect_received(rx, lens, 4);
	free(buf);
	close(plain);
	close(rx);
}

/* a destination the kernel refuses: nothing taken, no loop, no crash */
static void
test_send_refused(void **state)
{
	static const size_t lens[] = { 100, 100, 100 };
	struct sockaddr_in bad = { .sin_family = AF_INET };
	struct iovec iov[3];
	int fd = socket(AF_INET, SOCK_DGRAM, 0), gso = 1;
	uint64_t bytes = 0;
	uint8_t *buf = fill(lens, 3, iov);

	(void)state;
	bad.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bad.sin_port = 0; /* port 0: EINVAL from the kernel */
	assert_int_equal(dgram_send(fd, (struct sockaddr *)&bad, sizeof(bad),
			     iov, 3, &gso, &bytes),
	    0);
	assert_int_equal(bytes, 0);
	assert_int_equal(gso, 0); /* the GSO send failed first: plain after */
	free(buf);
	close(fd);
}

/* the kernel probe agrees with the kernel's version (UDP GSO: 4.18) */
static void
test_gso_probe(void **state)
{
	struct utsname u;
	int major = 0, minor = 0;

	(void)state;
	assert_int_equal(uname(&u), 0);
	assert_int_equal(sscanf(u.release, "%d.%d", &major, &minor), 2);
	assert_int_equal(dgram_gso_supported(),
	    major > 4 || (major == 4 && minor >= 18));
	/* asked again: the same answer */
	assert_int_equal(dgram_gso_supported(), dgram_gso_supported());
}

/* dgram_take: whole datagrams only, prefixes counted, bad lengths */
static void
test_take(void **state)
{
	struct evbuffer *b = evbuffer_new();
	uint8_t scratch[DGRAM_MAX + 16];
	struct iovec iov[4];
	size_t consumed = 0;

	(void)state;
	evbuffer_add(b, "\x00\x03" "abc" "\x00\x01" "z" "\x00\x05" "12", 12);
	assert_int_equal(dgram_take(b, scratch, sizeof(scratch), iov, 4,
			     &consumed),
	    2);
	assert_int_equal(consumed, 8);
	assert_memory_equal(iov[0].iov_base, "abc", 3);
	assert_memory_equal(iov[1].iov_base, "z", 1);
	/* in place: iov points into b, not at scratch */
	assert_true((uint8_t *)iov[0].iov_base < scratch ||
	    (uint8_t *)iov[0].iov_base >= scratch + sizeof(scratch));
	assert_int_equal(evbuffer_get_length(b), 12); /* nothing drained */
	evbuffer_drain(b, consumed);
	assert_int_equal(evbuffer_get_length(b), 4); /* the partial one */
	evbuffer_add(b, "345", 3);
	consumed = 0;
	assert_int_equal(dgram_take(b, scratch, sizeof(scratch), iov, 4,
			     &consumed),
	    1);
	assert_int_equal(consumed, 7);
	assert_memory_equal(iov[0].iov_base, "12345", 5);
	evbuffer_drain(b, consumed);
	/* a payload split across chains is copied into scratch, whole; the
	 * others stay in place */
	{
		struct evbuffer *p1 = evbuffer_new(), *p2 = evbuffer_new();

		evbuffer_add(p1, "\x00\x02" "ok" "\x00\x06" "abc", 9);
		evbuffer_add(p2, "def" "\x00\x01" "q", 6);
		evbuffer_add_buffer(b, p1);
		evbuffer_add_buffer(b, p2); /* moves p2's chain: a second one */
		consumed = 0;
		assert_int_equal(dgram_take(b, scratch, sizeof(scratch), iov,
				     4, &consumed),
		    3);
		assert_int_equal(consumed, 15);
		assert_int_equal(iov[0].iov_len, 2);
		assert_memory_equal(iov[0].iov_base, "ok", 2);
		assert_int_equal(iov[1].iov_len, 6);
		assert_memory_equal(iov[1].iov_base, "abcdef", 6);
		assert_ptr_equal(iov[1].iov_base, scratch);
		assert_int_equal(iov[2].iov_len, 1);
		assert_memory_equal(iov[2].iov_base, "q", 1);
		evbuffer_drain(b, consumed);
		assert_int_equal(evbuffer_get_length(b), 0);
		evbuffer_free(p1);
		evbuffer_free(p2);
	}
	evbuffer_add(b, "\x00\x00", 2);
	assert_int_equal(dgram_take(b, scratch, sizeof(scratch), iov, 4,
			     &consumed),
	    MG_EPROTO);
	evbuffer_drain(b, 2);
	evbuffer_add(b, "\xff\xe4", 2); /* 65508 */
	assert_int_equal(dgram_take(b, scratch, sizeof(scratch), iov, 4,
			     &consumed),
	    MG_EPROTO);
	evbuffer_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_send_runs_gso),
		cmocka_unit_test(test_send_runs_plain),
		cmocka_unit_test(test_send_many),
		cmocka_unit_test(test_send_beyond_one_batch),
		cmocka_unit_test(test_send_to),
		cmocka_unit_test(test_send_refused),
		cmocka_unit_test(test_gso_probe),
		cmocka_unit_test(test_take),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
