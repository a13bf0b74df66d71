// SPDX-License-Identifier: MIT
/*
 * genstage-c: GenStage for C. Stages on worker threads exchange events for
 * demand, so a fast producer can never overload a slow consumer. This
 * umbrella header is the whole supported API.
 */
#ifndef GENSTAGE_GENSTAGE_H
#define GENSTAGE_GENSTAGE_H

#include "boundary.h"
#include "broadway.h"
#include "bus.h"
#include "dispatcher.h"
#include "error.h"
#include "executor.h"
#include "flow.h"
#include "pipeline.h"
#include "pool.h"
#include "stage.h"
#include "sources.h"
#include "subscription.h"
/* Generated into the build tree (see version.h.in): found through the
 * include path rather than beside this file. */
#include <genstage/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
