// SPDX-License-Identifier: MIT
/*
 * Running one function on several threads at once and joining them, for
 * the topologies that publish or push from ordinary threads.
 */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"

bool gsb_run_threads(size_t n, void *(*fn)(void *), void *args, size_t size)
{
	pthread_t *th = malloc(n * sizeof *th);
	size_t started = 0;
	while (th && started < n &&
	       !pthread_create(&th[started], NULL, fn,
			       (char *)args + started * size))
		started++;
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	return started == n;
}
