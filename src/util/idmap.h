/* idmap.h: a small hash map from uint32 ids (never 0) to pointers. */
#ifndef MG_IDMAP_H
#define MG_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap {
	uint32_t *keys;  /* 0 = empty, UINT32_MAX = deleted */
	void **vals;
	size_t cap;      /* power of two, or 0 */
	size_t count;    /* live entries */
	size_t used;     /* live + deleted slots */
};

/* idmap_init: an empty map (no allocation until the first insert). */
void idmap_init(struct idmap *m);
/* idmap_free: release the table; the values are the caller's. */
void idmap_free(struct idmap *m);
/* idmap_get: the value for id, or NULL. */
void *idmap_get(const struct idmap *m, uint32_t id);
/* idmap_put: insert or replace; id must not be 0 or UINT32_MAX. */
void idmap_put(struct idmap *m, uint32_t id, void *val);
/* idmap_del: remove id; returns its value or NULL. */
void *idmap_del(struct idmap *m, uint32_t id);

#endif
