// SPDX-License-Identifier: MIT
/* The machine and the build a set of results was measured on. */
#ifndef GSB_MACHINE_H
#define GSB_MACHINE_H

#include <stdbool.h>

typedef struct gsb_machine {
	char cpu[128];       /* /proc/cpuinfo's first "model name" */
	bool virtual_cpu;    /* its flags say "hypervisor": a VM's CPUs */
	long cpus;           /* online */
	long usable_cpus;    /* in the harness's affinity mask */
	char gs_workers[16]; /* the GS_WORKERS variable, empty if unset */
	double mem_gib;      /* physical memory */
	char kernel[264];    /* uname: system, release, version, machine */
	char compiler[96];   /* the compiler that built gs-bench */
	char build[64];      /* meson buildtype and sanitizers */
	char date[32];       /* UTC, ISO 8601 */
	/* 1-minute load average before and after the runs: the machine is
	 * shared, and this says how much it was. */
	double load_before, load_after;
} gsb_machine;

/* Fills every field but load_after; what cannot be read becomes
 * "unknown" (or -1). */
void gsb_machine_read(gsb_machine *m);

/* The 1-minute load average now, or -1. */
double gsb_load_now(void);

/* CPU seconds every process on the machine has spent since boot (user,
 * nice, system, interrupts and time stolen by the hypervisor), or -1:
 * what the harness's children did not spend of it was spent by others. */
double gsb_machine_busy_s(void);

#endif
