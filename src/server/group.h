/*
 * group.h: load-balancing groups (docs/internals/groups.md). A group is a
 * tunnel of the registry that holds a public side and no session; its
 * members are tunnels of sessions without a public side of their own.
 * These functions keep the group's member list, decide who may join,
 * choose a member for each visitor and take members out for a while when
 * their streams are refused. Freeing tunnels stays with proxy.c.
 */
#ifndef MG_GROUP_H
#define MG_GROUP_H

#include <stddef.h>
#include <stdint.h>

struct ctrl_register;
struct proxy;
struct server;
struct sockaddr;

#define GROUP_NAME_MAX 63
#define GROUP_FAILS 3        /* refusals in a row that take a member out */
#define GROUP_EJECT_MIN_S 5
#define GROUP_EJECT_MAX_S 60

/*
 * group_options: check a registration's group options (name: 1 to 63 of
 * [A-Za-z0-9._-]; a key of 1 to 255 bytes; the strategy as lb.h reads it,
 * fit for the tunnel type; the weight) into *st and hdr. 0, or -1 with why
 * (and *code).
 */
int group_options(const struct ctrl_register *reg, int *st, char *hdr,
    uint8_t *code, char *why, size_t wl);

/* group_find: the group named name for tunnels of this type, or NULL */
struct proxy *group_find(struct server *srv, const char *name, size_t len,
    uint8_t type);

/*
 * group_join_check: may the registration reg join g (the same key,
 * compared in constant time on digests; the same strategy when it gives
 * one; the same port or host when it asks for one)? 0, or -1 with why
 * naming the group and *code.
 */
int group_join_check(const struct proxy *g, const struct ctrl_register *reg,
    const char *host, uint8_t *code, char *why, size_t wl);

/* group_init: a new group g takes the name, key and strategy of reg */
void group_init(struct proxy *g, const struct ctrl_register *reg, int st,
    const char *hdr);

/* group_add: m is a member of g now, with its weight (reg's, or 1) */
void group_add(struct proxy *g, struct proxy *m, unsigned weight);

/* group_remove: m leaves its group; returns the group when no member is
 * left (the caller frees it), else NULL */
struct proxy *group_remove(struct proxy *m);

/* group_orphan_members: g ends before its members (the server stops):
 * they keep their group id (no public side of their own) but no list */
void group_orphan_members(struct proxy *g);

/* group_usable: may m take a new visitor (its session is there, its
 * health is not down, it is not taken out)? */
int group_usable(const struct proxy *m, uint64_t now_ms);

/*
 * group_pick: the member of g for a new visitor from sa, asking for host
 * (HTTP, TLS; may be NULL), with the value of the group's header (hval,
 * hlen; HTTP), never the member with id exclude (0: none). NULL when no
 * member is usable.
 */
struct proxy *group_pick(struct proxy *g, const struct sockaddr *sa,
    const char *host, const char *hval, size_t hlen, uint32_t exclude);

/* group_result: a stream to member m ended, refused before its first
 * byte (refused 1) or not: after GROUP_FAILS refusals in a row m is taken
 * out for a back-off (5 s, doubling to 60 s) */
void group_result(struct proxy *m, int refused);

/* group_usable_count: g's usable members now */
unsigned group_usable_count(const struct proxy *g);

#endif
