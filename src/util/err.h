/* err.h: the project's error codes; 0 is success, every error is negative. */
#ifndef MG_ERR_H
#define MG_ERR_H

enum mg_err {
	MG_OK = 0,
	MG_EAGAIN = -1,   /* need more input / would block: not a failure */
	MG_EPROTO = -2,   /* malformed or unexpected input from a peer */
	MG_ENOMEM = -3,
	MG_ENOSPC = -4,   /* output buffer too small */
	MG_EINVAL = -5,   /* bad argument or value from the user */
	MG_EUNSUPP = -6,  /* well-formed but unsupported (type, option) */
	MG_ETOOLONG = -7, /* a field longer than allowed */
	MG_EIO = -8,      /* socket or file error; errno has details */
	MG_ECLOSED = -9,  /* the peer or object is closed */
	MG_ELIMIT = -10,  /* a configured limit was reached */
	MG_ETIMEDOUT = -11,
	MG_EAUTH = -12,   /* authentication failed */
	MG_EINUSE = -13,  /* port or name in use */
	MG_EDENIED = -14, /* not allowed by policy */
	MG_ECRC = -15,    /* checksum mismatch */
};

/* mg_strerror: a short static English description of code. */
const char *mg_strerror(int code);

#endif
