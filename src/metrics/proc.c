/* proc.c: the standard process_* figures of Prometheus clients, read from
 * /proc and getrusage/getrlimit when the registry is collected. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "metrics/metrics.h"
#include "metrics/metrics_int.h"
#include "util/xmalloc.h"

struct met_proc {
	struct met_series *rss, *vsz, *fds, *max_fds, *cpu, *start;
};

void
metrics_proc_free(struct met_proc *p)
{
	free(p);
}

/* the process's start from /proc (its start in clock ticks after boot,
 * plus the boot time), in Unix milliseconds; now when /proc says nothing */
static int64_t
start_time_ms(void)
{
	char buf[1024], *p;
	unsigned long long ticks = 0, btime = 0;
	long hz = sysconf(_SC_CLK_TCK);
	struct timespec ts;
	FILE *fp;
	int field;
	size_t n;

	if ((fp = fopen("/proc/stat", "r")) != NULL) {
		while (fgets(buf, sizeof(buf), fp) != NULL)
			if (sscanf(buf, "btime %llu", &btime) == 1)
				break;
		fclose(fp);
	}
	if ((fp = fopen("/proc/self/stat", "r")) != NULL) {
		n = fread(buf, 1, sizeof(buf) - 1, fp);
		buf[n] = '\0';
		fclose(fp);
		/* the command name may hold spaces and ')': skip to the
		 * last ')', then starttime is field 22 (state is field 3) */
		if ((p = strrchr(buf, ')')) != NULL) {
			for (field = 2; field < 21 && p != NULL; field++)
				p = strchr(p + 1, ' ');
			if (p != NULL)
				ticks = strtoull(p + 1, NULL, 10);
		}
	}
	if (btime > 0 && ticks > 0 && hz > 0)
		return (int64_t)btime * 1000 + (int64_t)(ticks * 1000 / hz);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
open_fds(void)
{
	struct dirent *de;
	int64_t n = 0;
	DIR *d;
	int self;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return 0;
	self = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		/* the directory's own fd is not one of the process's */
		if (atoi(de->d_name) == self)
			continue;
		n++;
	}
	closedir(d);
	return n;
}

static void
collect(void *arg)
{
	struct met_proc *p = arg;
	unsigned long long size, resident;
	long page = sysconf(_SC_PAGESIZE);
	struct rusage ru;
	struct rlimit rl;
	FILE *fp;

	if ((fp = fopen("/proc/self/statm", "r")) != NULL) {
		if (fscanf(fp, "%llu %llu", &size, &resident) == 2 &&
		    page > 0) {
			met_set(p->vsz, (int64_t)(size * (uint64_t)page));
			met_set(p->rss, (int64_t)(resident * (uint64_t)page));
		}
		fclose(fp);
	}
	met_set(p->fds, open_fds());
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		met_set(p->max_fds, rl.rlim_cur == RLIM_INFINITY ? INT64_MAX :
		    (int64_t)rl.rlim_cur);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		met_counter_set(p->cpu,
		    (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) *
		    1000000 + (uint64_t)(ru.ru_utime.tv_usec +
		    ru.ru_stime.tv_usec));
}

void
metrics_process(struct metrics *m)
{
	struct met_proc *p;
	struct met_family *cpu, *start;

	if (m->proc != NULL)
		return;
	p = m->proc = xcalloc(1, sizeof(*p));
	cpu = met_counter(m, "process_cpu_seconds_total",
	    "Total user and system CPU time spent in seconds.", NULL);
	met_set_div(cpu, 1e6);
	p->cpu = met_at0(cpu);
	p->fds = met_at0(met_gauge(m, "process_open_fds",
	    "Number of open file descriptors.", NULL));
	p->max_fds = met_at0(met_gauge(m, "process_max_fds",
	    "Maximum number of open file descriptors.", NULL));
	p->vsz = met_at0(met_gauge(m, "process_virtual_memory_bytes",
	    "Virtual memory size in bytes.", NULL));
	p->rss = met_at0(met_gauge(m, "process_resident_memory_bytes",
	    "Resident memory size in bytes.", NULL));
	start = met_gauge(m, "process_start_time_seconds",
	    "Start time of the process since unix epoch in seconds.", NULL);
	met_set_div(start, 1e3);
	p->start = met_at0(start);
	met_set(p->start, start_time_ms());
	metrics_on_collect(m, collect, p);
}
