/* test_fwatch.c: a file changed in place, by rename, by a symlink swap;
 * not for a touch or a neighbour. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "util/fwatch.h"

static int calls;

static void
on_change(void *arg)
{
	(void)arg;
	calls++;
}

static void
put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* run the loop for ms: the watcher debounces for 20 ms */
static void
spin(struct event_base *base, int ms)
{
	struct timeval tv = { 0, ms * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void
test_fwatch_changes(void **state)
{
	char dir[] = "/tmp/fwatch-XXXXXX", path[256], tmp[512], a[256],
	     b[256], link[256], lnew[256], other[256];
	struct event_base *base = event_base_new();
	struct fwatch *w;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mgrok.yml", dir);
	put(path, "one\n");
	w = fwatch_new(base, path, 20, on_change, NULL);
	assert_non_null(w);
	calls = 0;

	put(path, "two\n"); /* in place */
	spin(base, 150);
	assert_int_equal(calls, 1);

	snprintf(tmp, sizeof(tmp), "%s/.mgrok.yml.swp", dir);
	put(tmp, "three\n"); /* as editors save: a new file, renamed */
	assert_int_equal(rename(tmp, path), 0);
	spin(base, 150);
	assert_int_equal(calls, 2);

	put(path, "three\n"); /* the same content again: nothing */
	spin(base, 150);
	assert_int_equal(calls, 2);

	snprintf(other, sizeof(other), "%s/unrelated", dir);
	put(other, "x\n"); /* a neighbour: nothing */
	spin(base, 150);
	assert_int_equal(calls, 2);

	/* a ConfigMap: mgrok.yml -> ..data/mgrok.yml, ..data -> a or b */
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	assert_int_equal(mkdir(a, 0700), 0);
	assert_int_equal(mkdir(b, 0700), 0);
	snprintf(tmp, sizeof(tmp), "%s/mgrok.yml", a);
	put(tmp, "four\n");
	snprintf(tmp, sizeof(tmp), "%s/mgrok.yml", b);
	put(tmp, "five\n");
	snprintf(link, sizeof(link), "%s/..data", dir);
	assert_int_equal(symlink("a", link), 0);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink("..data/mgrok.yml", path), 0);
	spin(base, 150);
	assert_int_equal(calls, 3); /* four */
	snprintf(lnew, sizeof(lnew), "%s/..data_tmp", dir);
	assert_int_equal(symlink("b", lnew), 0);
	assert_int_equal(rename(lnew, link), 0); /* the atomic swap */
	spin(base, 150);
	assert_int_equal(calls, 4); /* five */

	fwatch_free(w);
	event_base_free(base);
	/* tidy up, best effort */
	unlink(path);
	unlink(link);
	unlink(other);
	snprintf(tmp, sizeof(tmp), "%s/mgrok.yml", a);
	unlink(tmp);
	snprintf(tmp, sizeof(tmp), "%s/mgrok.yml", b);
	unlink(tmp);
	rmdir(a);
	rmdir(b);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fwatch_changes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
