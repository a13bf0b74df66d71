// SPDX-License-Identifier: MIT
/*
 * Preloaded into the ThreadSanitizer test runs (see .ci/run). Criterion's
 * BoxFort places its shared arena at a random address picked with rand_r in
 * 0x2000'0000'0000..0x6000'0000'0000, nearly all of which ThreadSanitizer
 * has reserved for its shadow memory, so most runs abort with "Could not
 * initialize inheritable arena" (Criterion issue #274). This steers only
 * libcriterion's calls into the free top of the application range that
 * ThreadSanitizer keeps for PIE binaries (0x5660'0000'0000, past where the
 * kernel puts them); every other caller gets the real rand_r.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

/* BoxFort maps at 0x2000'0000'0000 + r * 16 MiB. */
#define ARENA_SLOT_FIRST 0x366000
#define ARENA_SLOTS 0x2000

int rand_r(unsigned int *seed)
{
	static int (*real)(unsigned int *);
	static unsigned next;
	Dl_info info;

	if (dladdr(__builtin_return_address(0), &info) && info.dli_fname &&
	    strstr(info.dli_fname, "libcriterion")) {
		unsigned i = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
		return ARENA_SLOT_FIRST + (int)(i % ARENA_SLOTS);
	}
	if (!real)
		real = (int (*)(unsigned int *))dlsym(RTLD_NEXT, "rand_r");
	return real(seed);
}
