/* agentid.c: one client id per agent configuration, kept across restarts,
 * and a lock so that two copies of one agent do not take each other's
 * place at the server (see agentid.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "client/agentid.h"
#include "conf/conf.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/xmalloc.h"

#define AGENTID_LABEL "mgrok agent id v1"

/* $XDG_STATE_HOME/mgrok[/leaf], or ~/.local/state/mgrok[/leaf]. */
static int
state_path(char *buf, size_t cap, const char *leaf)
{
	const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	int n;

	if (x && *x)
		n = snprintf(buf, cap, "%s/mgrok%s%s", x, leaf ? "/" : "",
		    leaf ? leaf : "");
	else if (home && *home)
		n = snprintf(buf, cap, "%s/.local/state/mgrok%s%s", home,
		    leaf ? "/" : "", leaf ? leaf : "");
	else
		return MG_EIO;
	return n > 0 && (size_t)n < cap ? 0 : MG_EIO;
}

static int
mkdir_p(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			*p = '/';
			return -1;
		}
		*p = '/';
	}
	return mkdir(path, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

static void
hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static int
unhex16(const char *s, uint8_t out[16])
{
	for (int i = 0; i < 32; i++)
		if (strchr("0123456789abcdefABCDEF", s[i]) == NULL ||
		    s[i] == '\0')
			return MG_EINVAL;
	for (int i = 0; i < 16; i++) {
		unsigned x;
		if (sscanf(s + 2 * i, "%2x", &x) != 1)
			return MG_EINVAL;
		out[i] = (uint8_t)x;
	}
	return 0;
}

int
agentid_seed_load(uint8_t seed[16], char *why, size_t whycap)
{
	char path[4096], dir[4096], buf[40];
	int fd = -1, rc = MG_EIO, damaged = 0;
	ssize_t n;

	why[0] = '\0';
	if (state_path(path, sizeof(path), "client_id") != 0 ||
	    state_path(dir, sizeof(dir), NULL) != 0) {
		snprintf(why, whycap, "neither XDG_STATE_HOME nor HOME is set");
		goto random;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		n = read(fd, buf, 32);
		close(fd);
		fd = -1;
		if (n == 32 && unhex16(buf, seed) == 0)
			return 0;
		damaged = 1; /* make a new seed rather than fail */
	}
	crypto_random(seed, 16);
	if (mkdir_p(dir) < 0) {
		snprintf(why, whycap, "cannot create %s: %s", dir,
		    strerror(errno));
		return MG_EIO;
	}
	/* O_EXCL through a temporary name and rename: two agents starting
	 * at once both end up with the seed that won */
	{
		char tmp[4200];
		snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			snprintf(why, whycap, "cannot write %s: %s", tmp,
			    strerror(errno));
			return MG_EIO;
		}
		hex(seed, 16, buf);
		buf[32] = '\n';
		if (write(fd, buf, 33) != 33 || fsync(fd) < 0 ||
		    (damaged ? rename(tmp, path) : link(tmp, path)) < 0) {
			int e = errno;
			close(fd);
			unlink(tmp);
			if (e == EEXIST) /* another agent made it first */
				return agentid_seed_load(seed, why, whycap);
			snprintf(why, whycap, "cannot write %s: %s", path,
			    strerror(e));
			return MG_EIO;
		}
		close(fd);
		unlink(tmp);
	}
	return 0;
random:
	crypto_random(seed, 16);
	return rc;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One line per tunnel, sorted, after the server: the agent's identity in
 * words (hashed for the key, written to the lock file for people). */
static char *
agent_describe(const struct client_conf *cf)
{
	char *lines[CONF_MAX_LOCALS], *out;
	size_t cap = strlen(cf->server) + 16, len;

	if (cf->config_file && cf->start_select[0]) {
		/* `mgrok start`: the file and the names it runs are the
		 * agent, not the tunnels' settings, which a reload (or an
		 * edit before a restart) may change while the public
		 * addresses should stay */
		char real[PATH_MAX];
		const char *f = realpath(cf->config_file, real) ? real :
		    cf->config_file;
		size_t n = cap + strlen(f) + strlen(cf->start_select) + 32;

		out = xmalloc(n);
		snprintf(out, n, "server %s\nconfig %s\nstart %s\n",
		    cf->server, f, cf->start_select);
		return out;
	}

	for (size_t i = 0; i < cf->nlocals; i++) {
		const struct local_spec *l = &cf->locals[i];
		size_t n = 64 + strlen(l->host) + strlen(l->name) +
		    strlen(l->subdomain) + strlen(l->hostname);
		lines[i] = xmalloc(n);
		snprintf(lines[i], n, "tunnel type=%u local=%s:%u name=%s "
		    "remote-port=%u subdomain=%s hostname=%s\n", l->type,
		    l->host, l->port, l->name, l->remote_port, l->subdomain,
		    l->hostname);
		cap += strlen(lines[i]);
	}
	qsort(lines, cf->nlocals, sizeof(lines[0]), cmp_str);
	out = xmalloc(cap);
	len = (size_t)snprintf(out, cap, "server %s\n", cf->server);
	for (size_t i = 0; i < cf->nlocals; i++) {
		memcpy(out + len, lines[i], strlen(lines[i]) + 1);
		len += strlen(lines[i]);
		free(lines[i]);
	}
	return out;
}

void
agentid_key(const struct client_conf *cf, uint8_t key[AGENTID_KEY_LEN])
{
	struct sha256_ctx h;
	char *d = agent_describe(cf);

	sha256_init(&h);
	sha256_update(&h, strlen(d), (const uint8_t *)d);
	sha256_digest(&h, AGENTID_KEY_LEN, key);
	free(d);
}

int
agentid_acquire(const struct client_conf *cf, uint8_t id[16], int *lock_fd,
    long *holder_pid, char *why, size_t whycap)
{
	uint8_t key[AGENTID_KEY_LEN], seed[16], full[SHA256_DIGEST_SIZE];
	char keyhex[2 * AGENTID_KEY_LEN + 1], leaf[80], path[4096];
	char *desc = NULL, pidline[64];
	struct sha256_ctx h;
	int fd = -1, rc;

	*lock_fd = -1;
	*holder_pid = 0;
	why[0] = '\0';
	agentid_key(cf, key);
	rc = agentid_seed_load(seed, why, whycap);
	sha256_init(&h);
	sha256_update(&h, sizeof(AGENTID_LABEL), (const uint8_t *)
	    AGENTID_LABEL);
	sha256_update(&h, sizeof(seed), seed);
	sha256_update(&h, sizeof(key), key);
	sha256_digest(&h, sizeof(full), full);
	memcpy(id, full, 16);
	if (rc != 0)
		goto out; /* the seed is random: nothing to lock either */
	hex(key, 8, keyhex); /* 64 bits name the file; the id uses them all */
	snprintf(leaf, sizeof(leaf), "agents/%s.lock", keyhex);
	if (state_path(path, sizeof(path), "agents") != 0 ||
	    mkdir_p(path) < 0 ||
	    state_path(path, sizeof(path), leaf) != 0 ||
	    (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		snprintf(why, whycap, "cannot open %s: %s", path,
		    strerror(errno));
		rc = MG_EIO;
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n;
		if (errno != EWOULDBLOCK) {
			snprintf(why, whycap, "cannot lock %s: %s", path,
			    strerror(errno));
			rc = MG_EIO;
			goto out;
		}
		n = pread(fd, pidline, sizeof(pidline) - 1, 0);
		pidline[n > 0 ? n : 0] = '\0';
		if (strncmp(pidline, "pid ", 4) == 0)
			*holder_pid = strtol(pidline + 4, NULL, 10);
		snprintf(why, whycap, "%s", path);
		rc = MG_EINUSE;
		goto out;
	}
	desc = agent_describe(cf);
	snprintf(pidline, sizeof(pidline), "pid %ld\n", (long)getpid());
	if (ftruncate(fd, 0) == 0 && pwrite(fd, pidline, strlen(pidline), 0) >
	    0)
		(void)!pwrite(fd, desc, strlen(desc), (off_t)strlen(pidline));
	*lock_fd = fd;
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(desc);
	return rc;
}
