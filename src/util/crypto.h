/*
 * crypto.h: the little cryptography the plain (non-TLS) path needs:
 * randomness from the kernel and constant-time comparison. Kept apart from
 * OpenSSL on purpose: initialising OpenSSL 3 costs a process about 2 MiB
 * of RSS, which a plain tunnel should not pay (TLS pays it when used).
 */
#ifndef MG_CRYPTO_H
#define MG_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/* crypto_random: n bytes from getrandom(2); aborts if the kernel cannot
 * give them (a process without randomness must not authenticate). */
void crypto_random(void *buf, size_t n);

/* crypto_memeq: 1 if a and b are equal over n bytes, in time that does
 * not depend on where they differ. */
int crypto_memeq(const void *a, const void *b, size_t n);

/* crypto_sha256: the SHA-256 of p[0..n) into out (nettle). */
#define CRYPTO_SHA256_LEN 32
void crypto_sha256(const void *p, size_t n, uint8_t out[CRYPTO_SHA256_LEN]);

#endif
