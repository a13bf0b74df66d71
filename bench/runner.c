// SPDX-License-Identifier: MIT
/*
 * A child process per run: the child runs the topology and writes its
 * gsb_result into a pipe; the parent waits on the pipe (printing progress
 * and enforcing the time limit), then reaps the child with wait4 to read
 * its peak RSS and CPU time.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"

/* Runs shorter than this print no progress at all. */
#define QUIET_S 1.0
/* A terminal gets an updated line this often; a log a line this often. */
#define TTY_EVERY_S 0.25
#define LOG_EVERY_S 10.0

_Atomic uint64_t *gsb_progress_new(void)
{
	void *m = mmap(NULL, sizeof(_Atomic uint64_t), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return m == MAP_FAILED ? NULL : m;
}

/* Confines the calling process to the first `cpus` CPUs it may use, as
 * `taskset` would, before any thread (or executor) exists; 0 if done. */
static int pin(unsigned cpus, gsb_result *r)
{
	cpu_set_t may, set;
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof may, &may)) {
		snprintf(r->note, sizeof r->note, "sched_getaffinity: %s",
			 strerror(errno));
		return -1;
	}
	unsigned n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < cpus; c++)
		if (CPU_ISSET(c, &may)) {
			CPU_SET(c, &set);
			n++;
		}
	if (n < cpus || sched_setaffinity(0, sizeof set, &set)) {
		snprintf(r->note, sizeof r->note,
			 "cannot pin to %u CPUs (%u allowed)", cpus, n);
		return -1;
	}
	return 0;
}

static _Noreturn void child_main(const gsb_topology *t, const gsb_params *p,
				 int fd)
{
	gsb_result r = { 0 };
	if (t->cpus && pin(t->cpus, &r))
		r.err = 1;
	else
		t->run(t, p, &r);
	/* Smaller than PIPE_BUF, so written at once. */
	ssize_t w = write(fd, &r, sizeof r);
	_exit(w == (ssize_t)sizeof r ? 0 : 1);
}

typedef struct progress_line {
	bool tty;
	bool shown; /* a carriage-return line is on the terminal */
	double last;
} progress_line;

static void show_progress(progress_line *pl, const gsb_topology *t,
			  uint64_t done, uint64_t events, double elapsed)
{
	double every = pl->tty ? TTY_EVERY_S : LOG_EVERY_S;
	if (elapsed < QUIET_S || elapsed - pl->last < every)
		return;
	pl->last = elapsed;
	fprintf(stderr, "%s  %-18s %5.1f%%  %llu of %llu %s  %.1f s%s",
		pl->tty ? "\r" : "", t->name,
		100.0 * (double)done / (double)events, (unsigned long long)done,
		(unsigned long long)events, t->unit ? t->unit : "events",
		elapsed, pl->tty ? "\033[K" : "\n");
	pl->shown = pl->tty;
}

/* Reads the child's result, waiting at most timeout_s in all. Returns 1
 * with a result, 0 on end of file (the child died first), -1 on timeout
 * (the child has been killed). */
static int await_result(pid_t pid, int fd, const gsb_topology *t,
			const gsb_params *p, double timeout_s, gsb_result *r)
{
	progress_line pl = { .tty = isatty(STDERR_FILENO) };
	double t0 = gsb_now();
	int got = -1;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 100) > 0) {
			ssize_t n = read(fd, r, sizeof *r);
			got = n == (ssize_t)sizeof *r;
			break;
		}
		double elapsed = gsb_now() - t0;
		if (elapsed > timeout_s) {
			kill(pid, SIGKILL);
			break;
		}
		uint64_t done = atomic_load_explicit(p->progress,
						     memory_order_relaxed);
		show_progress(&pl, t, done, p->events, elapsed);
	}
	if (pl.shown)
		fprintf(stderr, "\r\033[K");
	return got;
}

/* Says what went wrong with a run whose child has been reaped; empty
 * when nothing did. */
static void judge(int got, int status, double timeout_s, uint64_t events,
		  gsb_outcome *out)
{
	const gsb_result *r = &out->result;
	size_t len = sizeof out->error;
	if (got < 0)
		snprintf(out->error, len, "timed out after %g s (killed)",
			 timeout_s);
	else if (WIFSIGNALED(status))
		snprintf(out->error, len, "crashed: %s",
			 strsignal(WTERMSIG(status)));
	else if (!got || WEXITSTATUS(status))
		snprintf(out->error, len, "child exited with status %d",
			 WEXITSTATUS(status));
	else if (r->err)
		snprintf(out->error, len, "failed: %s", r->note);
	else if (r->checksum != r->expected || r->delivered != events)
		snprintf(out->error, len,
			 "WRONG CHECKSUM: sum %llu, expected %llu "
			 "(%llu of %llu events delivered)",
			 (unsigned long long)r->checksum,
			 (unsigned long long)r->expected,
			 (unsigned long long)r->delivered,
			 (unsigned long long)events);
	else
		out->error[0] = '\0';
}

static double cpu_seconds(const struct rusage *ru)
{
	return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) +
	       (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) * 1e-6;
}

bool gsb_run_forked(const gsb_topology *t, uint64_t events, double timeout_s,
		    _Atomic uint64_t *progress, gsb_outcome *out)
{
	gsb_params p = { .events = events, .progress = progress };
	*out = (gsb_outcome){ .peak_rss_kib = -1 };
	atomic_store(progress, 0);
	int fds[2];
	if (pipe(fds)) {
		snprintf(out->error, sizeof out->error, "pipe: %s",
			 strerror(errno));
		return false;
	}
	/* Anything buffered would otherwise be printed twice. */
	fflush(NULL);
	double busy0 = gsb_machine_busy_s(), t0 = gsb_now();
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		child_main(t, &p, fds[1]);
	}
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		snprintf(out->error, sizeof out->error, "fork: %s",
			 strerror(errno));
		return false;
	}
	int got = await_result(pid, fds[0], t, &p, timeout_s, &out->result);
	close(fds[0]);
	int status = 0;
	struct rusage ru = { 0 };
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		continue;
	out->peak_rss_kib = ru.ru_maxrss;
	out->cpu_s = cpu_seconds(&ru);
	out->vol_switches = ru.ru_nvcsw;
	out->invol_switches = ru.ru_nivcsw;
	double busy1 = gsb_machine_busy_s(), span = gsb_now() - t0;
	double others = (busy1 - busy0 - out->cpu_s) / span;
	out->others_cpus = busy0 < 0 || busy1 < 0 ? -1
			   : others > 0           ? others
						  : 0;
	if (out->result.cpu_s > 0)
		out->cpu_s = out->result.cpu_s;
	judge(got, status, timeout_s, events, out);
	return out->error[0] == '\0';
}

long gsb_rss_floor_kib(void)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid < 0)
		return -1;
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR)
			return -1;
	return ru.ru_maxrss;
}
