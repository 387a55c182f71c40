/* version.h: mgrok's version, one place for every module that names it. */
#ifndef MG_VERSION_H
#define MG_VERSION_H

#define MGROK_VERSION "0.1.0"

#endif
