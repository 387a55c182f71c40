/* strmap.c: separate chaining with FNV-1a; the table doubles at a load of
 * one, so a lookup stays a hash and a compare or two however many tunnels
 * a server holds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/strmap.h"
#include "util/xmalloc.h"

struct strmap_ent {
	struct strmap_ent *next;
	void *val;
	char key[];
};

static size_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

void
strmap_init(struct strmap *m)
{
	memset(m, 0, sizeof(*m));
}

void
strmap_free(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		struct strmap_ent *e = m->b[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(m->b);
	strmap_init(m);
}

static struct strmap_ent **
slot(const struct strmap *m, const char *key)
{
	struct strmap_ent **pp = &m->b[hash(key) & (m->cap - 1)];

	while (*pp != NULL && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

void *
strmap_get(const struct strmap *m, const char *key)
{
	struct strmap_ent *e;

	if (m->cap == 0)
		return NULL;
	e = *slot(m, key);
	return e ? e->val : NULL;
}

static void
grow(struct strmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct strmap_ent **b = xcalloc(cap, sizeof(*b));

	for (size_t i = 0; i < m->cap; i++) {
		struct strmap_ent *e = m->b[i], *next;
		for (; e != NULL; e = next) {
			size_t j = hash(e->key) & (cap - 1);
			next = e->next;
			e->next = b[j];
			b[j] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->cap = cap;
}

void
strmap_put(struct strmap *m, const char *key, void *val)
{
	struct strmap_ent **pp, *e;
	size_t kl = strlen(key);

	if (m->count >= m->cap)
		grow(m);
	pp = slot(m, key);
	if (*pp != NULL) {
		(*pp)->val = val;
		return;
	}
	e = xmalloc(sizeof(*e) + kl + 1);
	memcpy(e->key, key, kl + 1);
	e->val = val;
	e->next = NULL;
	*pp = e;
	m->count++;
}

void *
strmap_del(struct strmap *m, const char *key)
{
	struct strmap_ent **pp, *e;
	void *v;

	if (m->cap == 0 || *(pp = slot(m, key)) == NULL)
		return NULL;
	e = *pp;
	*pp = e->next;
	v = e->val;
	free(e);
	m->count--;
	return v;
}
