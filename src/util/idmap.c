/* idmap.c: open addressing with linear probing; ids are dense, so a
 * multiplicative hash spreads them well. */
#include <stdlib.h>
#include <string.h>

#include "util/idmap.h"
#include "util/xmalloc.h"

#define IDMAP_DEL UINT32_MAX

void
idmap_init(struct idmap *m)
{
	memset(m, 0, sizeof(*m));
}

void
idmap_free(struct idmap *m)
{
	free(m->keys);
	free(m->vals);
	idmap_init(m);
}

static size_t
slot_of(uint32_t id, size_t cap)
{
	return (size_t)((id * 2654435761u) & (cap - 1));
}

void *
idmap_get(const struct idmap *m, uint32_t id)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = slot_of(id, m->cap), n = 0; n < m->cap;
	     i = (i + 1) & (m->cap - 1), n++) {
		if (m->keys[i] == id)
			return m->vals[i];
		if (m->keys[i] == 0)
			return NULL;
	}
	return NULL;
}

static void
idmap_grow(struct idmap *m)
{
	struct idmap old = *m;
	size_t cap = old.cap ? old.cap : 8;

	/* grow only when live entries fill half; else just drop tombstones */
	if (old.count * 2 >= cap)
		cap *= 2;
	m->keys = xcalloc(cap, sizeof(*m->keys));
	m->vals = xcalloc(cap, sizeof(*m->vals));
	m->cap = cap;
	m->count = m->used = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.keys[i] != 0 && old.keys[i] != IDMAP_DEL)
			idmap_put(m, old.keys[i], old.vals[i]);
	free(old.keys);
	free(old.vals);
}

void
idmap_put(struct idmap *m, uint32_t id, void *val)
{
	size_t i, tomb = SIZE_MAX;

	if ((m->used + 1) * 4 > m->cap * 3)
		idmap_grow(m);
	for (i = slot_of(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == id) {
			m->vals[i] = val;
			return;
		}
		if (m->keys[i] == IDMAP_DEL && tomb == SIZE_MAX)
			tomb = i;
		if (m->keys[i] == 0)
			break;
	}
	if (tomb != SIZE_MAX)
		i = tomb;
	else
		m->used++;
	m->keys[i] = id;
	m->vals[i] = val;
	m->count++;
}

void *
idmap_del(struct idmap *m, uint32_t id)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = slot_of(id, m->cap), n = 0; n < m->cap;
	     i = (i + 1) & (m->cap - 1), n++) {
		if (m->keys[i] == id) {
			void *v = m->vals[i];
			m->keys[i] = IDMAP_DEL;
			m->vals[i] = NULL;
			m->count--;
			return v;
		}
		if (m->keys[i] == 0)
			return NULL;
	}
	return NULL;
}
