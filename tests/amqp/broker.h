// SPDX-License-Identifier: MIT
/*
 * A private RabbitMQ broker for the connector suites: started once per
 * suite (a Criterion PRE_ALL hook) on free loopback ports with its data,
 * logs and config in a temporary folder, never touching the system
 * service; killed and removed at the end, or by a watchdog process when
 * the suite dies. Tests find it through the environment (broker_port) and
 * may kill -9 it and restart it on the same data folder.
 */
#ifndef GS_TEST_BROKER_H
#define GS_TEST_BROKER_H

#include <stdbool.h>
#include <stddef.h>

/* Starts the suite's broker and exports where it is to the tests; on
 * failure the tests see port 0 and say why. From PRE_ALL. */
void broker_suite_start(void);
/* Stops it and removes its folder. From POST_ALL. */
void broker_suite_stop(void);

/* The running broker's AMQP port; 0 if it did not start. */
int broker_port(void);
/* Why it did not start ("" if it did). */
const char *broker_error(void);

/* Makes the broker write out its metadata (queue and exchange
 * declarations). RabbitMQ 3.10 keeps them in Mnesia, whose transaction log
 * is buffered in the broker's memory for a moment: a durable queue declared
 * just before a kill -9 can be missing after the restart, taking the
 * messages confirmed into it with it. A test that kills the broker calls
 * this first (it takes a second or two). False, with broker_error, if it
 * failed. */
bool broker_sync_metadata(void);
/* kill -9 the broker (its whole process group), wait for it to go. */
void broker_kill9(void);
/* Starts it again on the same ports and data folder and waits until it
 * accepts connections; false (with broker_error) if it did not. */
bool broker_restart(void);

/* Starts the broker again if it does not accept connections and waits
 * for it; true if it is there. The broker serves the whole suite, and a
 * test can leave it dead: one that timed out between broker_kill9 and
 * broker_restart (Criterion kills a test at its .timeout), or a broker
 * that crashed or that the OOM killer took under load. Without this every
 * later test would fail for want of it. False (with broker_error) if it
 * never started or did not come back. */
bool broker_ensure(void);

/* A queue or exchange name unique to this test process. */
void broker_name(char *buf, size_t size, const char *what);

#endif
