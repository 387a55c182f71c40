/* lb.c: see lb.h. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "server/lb.h"

static int
token_char(int c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int
lb_parse_strategy(const char *s, size_t n, enum lb_strategy *st,
    char header[LB_HEADER_MAX], const char **err)
{
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(s, lit, n) == 0)
	header[0] = '\0';
	if (n == 0 || IS("round_robin")) {
		*st = LB_ROUND_ROBIN;
		return 0;
	}
	if (IS("least_conn")) {
		*st = LB_LEAST_CONN;
		return 0;
	}
	if (IS("hash:source_ip")) {
		*st = LB_HASH_SOURCE;
		return 0;
	}
	if (IS("hash:host")) {
		*st = LB_HASH_HOST;
		return 0;
	}
#undef IS
	if (n > 12 && memcmp(s, "hash:header:", 12) == 0) {
		size_t hl = n - 12;
		if (hl >= LB_HEADER_MAX) {
			*err = "header name too long";
			return -1;
		}
		for (size_t i = 0; i < hl; i++) {
			if (!token_char((unsigned char)s[12 + i])) {
				*err = "not a header name";
				return -1;
			}
			header[i] = (char)tolower((unsigned char)s[12 + i]);
		}
		header[hl] = '\0';
		*st = LB_HASH_HEADER;
		return 0;
	}
	*err = "expected round_robin, least_conn, hash:source_ip, hash:host "
	    "or hash:header:NAME";
	return -1;
}

const char *
lb_strategy_str(enum lb_strategy st, const char *header, char *buf,
    size_t cap)
{
	switch (st) {
	case LB_LEAST_CONN:
		snprintf(buf, cap, "least_conn");
		break;
	case LB_HASH_SOURCE:
		snprintf(buf, cap, "hash:source_ip");
		break;
	case LB_HASH_HOST:
		snprintf(buf, cap, "hash:host");
		break;
	case LB_HASH_HEADER:
		snprintf(buf, cap, "hash:header:%s", header ? header : "");
		break;
	default:
		snprintf(buf, cap, "round_robin");
		break;
	}
	return buf;
}

/* FNV-1a, then a final mix (splitmix64's) so close inputs spread */
uint64_t
lb_hash(const void *p, size_t n, uint64_t seed)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ULL ^ seed;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ULL;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

/* smooth weighted round robin over the usable members that pass (only
 * NULL: all usable ones) */
static int
pick_wrr(struct lb_member *m, size_t n, const unsigned char *only)
{
	int64_t total = 0;
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		if (!m[i].usable || (only && !only[i]))
			continue;
		m[i].current += m[i].weight;
		total += m[i].weight;
		if (best < 0 || m[i].current > m[best].current)
			best = (int)i;
	}
	if (best >= 0)
		m[best].current -= total;
	return best;
}

int
lb_pick(enum lb_strategy st, struct lb_member *m, size_t n,
    const void *key, size_t klen)
{
	if (st == LB_LEAST_CONN) {
		/* the lowest active/weight, compared without division */
		unsigned char tie[256];
		int best = -1;
		if (n > sizeof(tie))
			n = sizeof(tie);
		for (size_t i = 0; i < n; i++) {
			if (!m[i].usable)
				continue;
			if (best < 0 || (uint64_t)m[i].active * m[best].weight <
			    (uint64_t)m[best].active * m[i].weight)
				best = (int)i;
		}
		if (best < 0)
			return -1;
		for (size_t i = 0; i < n; i++)
			tie[i] = m[i].usable && (uint64_t)m[i].active *
			    m[best].weight == (uint64_t)m[best].active *
			    m[i].weight;
		return pick_wrr(m, n, tie);
	}
	if ((st == LB_HASH_SOURCE || st == LB_HASH_HOST ||
	    st == LB_HASH_HEADER) && key != NULL) {
		/* weighted rendezvous: score = -w / ln(u), u in (0, 1) from
		 * the hash of (key, member) */
		uint64_t kh = lb_hash(key, klen, 0x6d67726f6bULL);
		double best_score = 0;
		int best = -1;
		for (size_t i = 0; i < n; i++) {
			uint64_t h;
			double u, score;
			if (!m[i].usable)
				continue;
			h = lb_hash(&m[i].ident, sizeof(m[i].ident), kh);
			u = ((double)(h >> 11) + 0.5) / 9007199254740992.0;
			score = -(double)m[i].weight / log(u);
			if (best < 0 || score > best_score) {
				best = (int)i;
				best_score = score;
			}
		}
		return best;
	}
	return pick_wrr(m, n, NULL);
}
