// SPDX-License-Identifier: MIT
/*
 * Error codes. Every public call returns a gs_err; GS_OK is zero and every
 * failure is a positive code. Codes and messages come from one list so they
 * can never disagree. Callbacks return GS_OK or any non-zero int: a code from
 * this list, or the user's own (GS_EUSER and above), which stops the stage
 * with that reason.
 */
#ifndef GENSTAGE_ERROR_H
#define GENSTAGE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define GS_ERRORS(X)                                                           \
	X(GS_OK, "success")                                                    \
	X(GS_EINVAL, "invalid argument")                                       \
	X(GS_ENOMEM, "out of memory")                                          \
	X(GS_ESTATE, "not allowed in the current state")                       \
	X(GS_EKIND, "the stage's kind does not allow this")                    \
	X(GS_ESELF, "a stage cannot subscribe to itself")                      \
	X(GS_ECYCLE, "the subscription would create a cycle")                  \
	X(GS_EDEMAND, "min_demand must be less than max_demand")               \
	X(GS_EPIPELINE, "the stages belong to different pipelines")            \
	X(GS_ETHREAD, "not allowed from the calling thread or callback")       \
	X(GS_ESPAWN, "could not start a thread")                               \
	X(GS_ECANCELED, "the subscription was cancelled")                      \
	X(GS_ETIMEDOUT, "timed out")                                           \
	X(GS_EFULL, "buffer full")                                             \
	X(GS_ECLOSED, "the stage, bus or stream is closed or has stopped")     \
	X(GS_EBUSY, "the partition is already taken")                          \
	X(GS_EVERSION, "a struct version newer than this library knows")       \
	X(GS_EEXIST, "the consumer is already subscribed to this producer")    \
	X(GS_EIO, "an input/output error")

typedef enum gs_err {
#define GS__ENUM(name, msg) name,
	GS_ERRORS(GS__ENUM)
#undef GS__ENUM
		GS__ERR_COUNT,
	/* User callbacks may return their own codes from here up. */
	GS_EUSER = 1000
} gs_err;

/* A static message for any code, never NULL: the list's own, "error
 * returned by a callback" for codes from GS_EUSER up, "unknown error" for
 * the rest. Thread-safe. */
const char *gs_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
