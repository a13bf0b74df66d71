// SPDX-License-Identifier: MIT
/*
 * The check every call that reads a versioned public struct makes first
 * (see the rule in genstage/version.h): a version above the one this
 * library was built with is refused, with a message in the pipeline's log.
 *
 * Reading a refused struct's own log hook (gs_pipeline_new does) is safe:
 * fields are only added at the end, so a newer struct has every field this
 * library knows, where it expects them. The converse is the readers' duty
 * once some struct reaches version 1: a version-0 struct is shorter, so
 * its reader must copy only the version-0 fields, not sizeof the struct.
 */
#ifndef GS_STRUCT_VERSION_H
#define GS_STRUCT_VERSION_H

#include <stdint.h>

#include "genstage/genstage.h"

/* Says through log->log (stderr when log or its hook is NULL) that a
 * struct of `version` is newer than `known`, the `macro` this library was
 * built with, and returns GS_EVERSION. */
gs_err gs__refuse_newer(const gs_pipeline_opts *log, const char *macro,
			uint32_t version, uint32_t known);

/*
 * Returns GS_EVERSION from the calling function when the struct `s` (NULL
 * passes) has a version above `known` (its GS_<NAME>_VERSION), after
 * logging why through the gs_pipeline_opts `log`.
 */
#define GS__REFUSE_NEWER(log, s, known)                                        \
	do {                                                                   \
		if ((s) && (s)->version > (known))                             \
			return gs__refuse_newer((log), #known, (s)->version,   \
						(known));                      \
	} while (0)

#endif
