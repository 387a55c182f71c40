/* strmap.h: a small hash map from C strings to pointers (the server's host
 * name and lease-owner indexes). */
#ifndef MG_STRMAP_H
#define MG_STRMAP_H

#include <stddef.h>

struct strmap_ent;

struct strmap {
	struct strmap_ent **b; /* chains; NULL until the first insert */
	size_t cap;            /* power of two, or 0 */
	size_t count;
};

/* strmap_init: an empty map (no allocation until the first insert). */
void strmap_init(struct strmap *m);
/* strmap_free: release the table and its key copies; values are the
 * caller's. */
void strmap_free(struct strmap *m);
/* strmap_get: the value for key, or NULL. */
void *strmap_get(const struct strmap *m, const char *key);
/* strmap_put: insert or replace (the map keeps a copy of key). */
void strmap_put(struct strmap *m, const char *key, void *val);
/* strmap_del: remove key; its value, or NULL when it was not there. */
void *strmap_del(struct strmap *m, const char *key);

#endif
