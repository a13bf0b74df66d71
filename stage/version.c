// SPDX-License-Identifier: MIT
/*
 * The library's version at run time, which a program compares with the
 * headers' it was built with, and the refusal of public structs whose
 * version is newer than this library knows.
 */
#include "internal.h"
#include "struct_version.h"

GS__API uint32_t gs_version(void)
{
	return GS_VERSION_NUMBER;
}

GS__API const char *gs_version_string(void)
{
	return GS_VERSION_STRING;
}

gs_err gs__refuse_newer(const gs_pipeline_opts *log, const char *macro,
			uint32_t version, uint32_t known)
{
	return gs__refuse(log, GS_EVERSION,
			  "refused a struct of version %u: this library (%s) "
			  "knows %s up to %u; the program was built against "
			  "newer headers",
			  (unsigned)version, GS_VERSION_STRING, macro,
			  (unsigned)known);
}
