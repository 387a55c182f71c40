/*
 * webassets.h: the static pages built into the binary. The table is
 * generated at build time by tools/embed.c from every file under
 * src/web/assets/ ($(BUILD)/gen/webassets.c): the first directory level
 * names the set ("dashboard", "inspect"), the rest is the path the file
 * is served under (src/web/assets/dashboard/index.html is set
 * "dashboard", path "/index.html").
 */
#ifndef MG_WEBASSETS_H
#define MG_WEBASSETS_H

#include <stddef.h>

struct web_asset {
	const char *set, *path, *ctype;
	const unsigned char *data;
	size_t len;
};

/* web_assets[0..web_nassets): static, read-only */
extern const struct web_asset web_assets[];
extern const size_t web_nassets;

#endif
