// SPDX-License-Identifier: MIT
/* One private broker for the whole connector suite (see broker.h). */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include "broker.h"

ReportHook(PRE_ALL)(struct criterion_test_set *tests)
{
	(void)tests;
	broker_suite_start();
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	broker_suite_stop();
}
