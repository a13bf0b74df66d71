// SPDX-License-Identifier: MIT
/* Messages for the error codes, from the same list as the codes, and the
 * message that goes with a refused call. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

GS__API const char *gs_strerror(int code)
{
	static const char *const messages[] = {
#define GS__MSG(name, msg) [name] = msg,
		GS_ERRORS(GS__MSG)
#undef GS__MSG
	};
	if (code >= 0 && code < GS__ERR_COUNT)
		return messages[code];
	if (code >= GS_EUSER)
		return "error returned by a callback";
	return "unknown error";
}

gs_err gs__refuse(const gs_pipeline_opts *log, gs_err code, const char *fmt,
		  ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (log && log->log)
		log->log(log->log_arg, GS_LOG_ERROR, NULL, msg);
	else
		fprintf(stderr, "genstage: error: %s\n", msg);
	return code;
}
