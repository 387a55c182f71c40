/* replay.c: run a fuzz harness once on every file of a corpus directory. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPLAY_MAX_FILES 100000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* optional in a harness, as in libFuzzer */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int
replay_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* replay_one: the file in a buffer of exactly its size, so that sanitizers
 * catch a read past the end. 0, or -1 if it cannot be read. */
static int
replay_one(const char *path)
{
	uint8_t *buf = NULL;
	FILE *f = NULL;
	struct stat st;
	size_t len;
	int rc = -1;

	if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st) != 0)
		goto out;
	len = (size_t)st.st_size;
	if ((buf = malloc(len > 0 ? len : 1)) == NULL)
		goto out;
	if (fread(buf, 1, len, f) != len)
		goto out;
	LLVMFuzzerTestOneInput(buf, len);
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "replay: cannot read %s\n", path);
	free(buf);
	if (f != NULL)
		fclose(f);
	return rc;
}

int
main(int argc, char **argv)
{
	char **names = NULL, path[4096];
	struct dirent *de;
	struct stat st;
	DIR *d = NULL;
	size_t n = 0, i;
	int rc = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s corpus-dir\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	if ((d = opendir(argv[1])) == NULL) {
		perror(argv[1]);
		goto out;
	}
	if ((names = calloc(REPLAY_MAX_FILES, sizeof(*names))) == NULL)
		goto out;
	while ((de = readdir(d)) != NULL && n < REPLAY_MAX_FILES) {
		if (snprintf(path, sizeof(path), "%s/%s", argv[1],
		    de->d_name) >= (int)sizeof(path))
			continue;
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if ((names[n] = strdup(de->d_name)) == NULL)
			goto out;
		n++;
	}
	/* A fixed order makes a failure reproducible run to run. */
	qsort(names, n, sizeof(*names), replay_cmp);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", argv[1], names[i]);
		if (replay_one(path) != 0)
			goto out;
	}
	printf("replay: %zu inputs from %s\n", n, argv[1]);
	if (n == 0)
		fprintf(stderr, "replay: no inputs in %s\n", argv[1]);
	else
		rc = 0;
out:
	if (names != NULL)
		for (i = 0; i < n; i++)
			free(names[i]);
	free(names);
	if (d != NULL)
		closedir(d);
	return rc;
}
