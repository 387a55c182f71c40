/* err.c: names for the MG_E* codes. */
#include "util/err.h"

const char *
mg_strerror(int code)
{
	switch (code) {
	case MG_OK: return "success";
	case MG_EAGAIN: return "need more data";
	case MG_EPROTO: return "protocol error";
	case MG_ENOMEM: return "out of memory";
	case MG_ENOSPC: return "buffer too small";
	case MG_EINVAL: return "invalid argument";
	case MG_EUNSUPP: return "unsupported";
	case MG_ETOOLONG: return "too long";
	case MG_EIO: return "I/O error";
	case MG_ECLOSED: return "closed";
	case MG_ELIMIT: return "limit reached";
	case MG_ETIMEDOUT: return "timed out";
	case MG_EAUTH: return "authentication failed";
	case MG_EINUSE: return "in use";
	case MG_EDENIED: return "not allowed";
	case MG_ECRC: return "checksum mismatch";
	}
	return "unknown error";
}
