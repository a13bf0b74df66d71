// SPDX-License-Identifier: MIT
/* Messages for the error codes, from the same list as the codes. */
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
