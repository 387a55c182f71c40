/* agentid.h: the identity of one agent (one configuration of tunnels), so
 * that two agents of one user do not replace each other at the server and
 * a restarted agent gets its public addresses back. */
#ifndef MG_AGENTID_H
#define MG_AGENTID_H

#include <stddef.h>
#include <stdint.h>

struct client_conf;

#define AGENTID_KEY_LEN 32

/*
 * agentid_key: SHA-256 over the server address and the sorted tunnel specs
 * (type, local host and port, name, remote port, subdomain, host name) of
 * cf: equal for two runs of the same agent, different for two agents. The
 * order of --local options does not matter.
 */
void agentid_key(const struct client_conf *cf, uint8_t key[AGENTID_KEY_LEN]);

/*
 * agentid_acquire: the client id of cf's agent, derived from the user's
 * seed ($XDG_STATE_HOME/mgrok/client_id, or ~/.local/state/...; created
 * with random bytes when missing) and agentid_key, and an flock(2) on the
 * agent's file beside it (mgrok/agents/KEY.lock, which also records the
 * holder's pid, server and tunnels for a person to read).
 * Returns 0 with *lock_fd >= 0 (the caller closes it when the agent ends,
 * which releases the lock; so does the process's death); MG_EINUSE when
 * another live process holds the lock (*holder_pid set, 0 if unknown);
 * MG_EIO when the state directory cannot be used: id is then random (this
 * run's addresses will not survive a restart), *lock_fd is -1 and why says
 * what failed.
 */
int agentid_acquire(const struct client_conf *cf, uint8_t id[16],
    int *lock_fd, long *holder_pid, char *why, size_t whycap);

/*
 * agentid_seed_load: the user's seed (16 bytes) from the state directory,
 * created when missing. 0, or MG_EIO with the reason in why (seed random).
 */
int agentid_seed_load(uint8_t seed[16], char *why, size_t whycap);

#endif
