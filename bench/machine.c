// SPDX-License-Identifier: MIT
/* Describes the machine and the build, for the results' header. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "machine.h"

/* meson passes the buildtype, optimization level and sanitizers. */
#ifndef GSB_BUILD
#define GSB_BUILD "unknown"
#endif

/* The first "model name" of /proc/cpuinfo, and whether the first "flags"
 * line has "hypervisor" (the kernel runs as a guest). */
static void read_cpu_model(char *out, size_t len, bool *virtual_cpu)
{
	snprintf(out, len, "unknown");
	*virtual_cpu = false;
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[4096];
	bool model = false, flags = false;
	while ((!model || !flags) && fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		colon += strspn(colon + 1, " \t") + 1;
		colon[strcspn(colon, "\n")] = '\0';
		if (!model && !strncmp(line, "model name", 10)) {
			snprintf(out, len, "%s", colon);
			model = true;
		} else if (!flags && !strncmp(line, "flags", 5)) {
			*virtual_cpu = strstr(colon, "hypervisor") != NULL;
			flags = true;
		}
	}
	fclose(f);
}

static void read_compiler(char *out, size_t len)
{
#if defined(__clang__)
	snprintf(out, len, "clang %d.%d.%d", __clang_major__, __clang_minor__,
		 __clang_patchlevel__);
#elif defined(__GNUC__)
	snprintf(out, len, "gcc %s", __VERSION__);
#else
	snprintf(out, len, "unknown");
#endif
}

double gsb_load_now(void)
{
	double load;
	return getloadavg(&load, 1) == 1 ? load : -1;
}

double gsb_machine_busy_s(void)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal;
	int got = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
			     &user, &nice, &sys, &idle, &iowait, &irq, &softirq,
			     &steal)
		    : 0;
	if (f)
		fclose(f);
	if (got != 8)
		return -1;
	return (double)(user + nice + sys + irq + softirq + steal) /
	       (double)sysconf(_SC_CLK_TCK);
}

void gsb_machine_read(gsb_machine *m)
{
	m->load_before = gsb_load_now();
	m->load_after = -1;
	read_cpu_model(m->cpu, sizeof m->cpu, &m->virtual_cpu);
	m->cpus = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	m->usable_cpus = sched_getaffinity(0, sizeof set, &set)
				 ? -1
				 : (long)CPU_COUNT(&set);
	const char *w = getenv("GS_WORKERS");
	snprintf(m->gs_workers, sizeof m->gs_workers, "%s", w ? w : "");
	m->mem_gib = (double)sysconf(_SC_PHYS_PAGES) *
		     (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024 * 1024);
	struct utsname u;
	if (uname(&u) == 0)
		snprintf(m->kernel, sizeof m->kernel, "%s %s %s %s", u.sysname,
			 u.release, u.version, u.machine);
	else
		snprintf(m->kernel, sizeof m->kernel, "unknown");
	read_compiler(m->compiler, sizeof m->compiler);
	snprintf(m->build, sizeof m->build, "%s", GSB_BUILD);
	time_t now = time(NULL);
	struct tm tm;
	if (!gmtime_r(&now, &tm) ||
	    !strftime(m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(m->date, sizeof m->date, "unknown");
}
