// SPDX-License-Identifier: MIT
/*
 * The private broker's lifecycle. The suite's runner process starts epmd,
 * a watchdog and the broker, each in a session of its own; the watchdog
 * holds the read end of a pipe from the runner and, when it closes (the
 * runner ended, normally or not), kills every process group it was told
 * of and removes the folder. Test processes (the runner's children) find
 * the broker through environment variables and a pgid file in the folder,
 * which a restart rewrites and reports to the watchdog.
 */
#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef GS_TEST_BROKER_START_S
#define GS_TEST_BROKER_START_S 180
#endif

#define RABBITMQ_SERVER "/usr/lib/rabbitmq/bin/rabbitmq-server"

static char error_msg[1024];

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v ? v : "";
}

int broker_port(void)
{
	return atoi(env("GS_TEST_AMQP_PORT"));
}

const char *broker_error(void)
{
	return error_msg[0] ? error_msg : env("GS_TEST_AMQP_ERROR");
}

static void fail(const char *fmt, const char *arg)
{
	snprintf(error_msg, sizeof error_msg, fmt, arg);
	setenv("GS_TEST_AMQP_ERROR", error_msg, 1);
	setenv("GS_TEST_AMQP_PORT", "0", 1);
}

void broker_name(char *buf, size_t size, const char *what)
{
	static unsigned n;
	snprintf(buf, size, "gs-test-%s-%ld-%u", what, (long)getpid(), n++);
}

/* Three free loopback ports at once (so they differ). */
static bool free_ports(int *ports, int n)
{
	int fds[3];
	for (int i = 0; i < n; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(
						 INADDR_LOOPBACK) };
		socklen_t len = sizeof a;
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] < 0 || bind(fds[i], (void *)&a, sizeof a) ||
		    getsockname(fds[i], (void *)&a, &len))
			return false;
		ports[i] = ntohs(a.sin_port);
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
	return true;
}

static bool write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	fputs(text, f);
	return fclose(f) == 0;
}

/* The watchdog: kills what it was told of once the pipe closes. */
static void watchdog(int rd, const char *dir)
{
	pid_t groups[64];
	int n = 0;
	pid_t g;
	while (read(rd, &g, sizeof g) == sizeof g)
		if (n < 64)
			groups[n++] = g;
	for (int i = 0; i < n; i++)
		kill(-groups[i], SIGKILL);
	pid_t rm = fork();
	if (rm == 0) {
		execl("/bin/rm", "rm", "-rf", dir, (char *)NULL);
		_exit(127);
	}
	if (rm > 0)
		waitpid(rm, NULL, 0);
	_exit(0);
}

static void tell_watchdog(pid_t pgid)
{
	int fd = atoi(env("GS_TEST_AMQP_WATCH_FD"));
	if (fd > 0 && write(fd, &pgid, sizeof pgid) != sizeof pgid)
		perror("broker: telling the watchdog");
}

/* Starts argv in a session of its own with stdout and stderr to `log`
 * and the broker's environment; its pid (= its process group). */
static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	setsid();
	/* Sanitizer runtimes preloaded for the tests have no business in
	 * the broker's processes. */
	unsetenv("LD_PRELOAD");
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	int null = open("/dev/null", O_RDONLY);
	if (null >= 0)
		dup2(null, 0);
	for (int i = 3; i < 1024; i++)
		close(i);
	execvp(argv[0], argv);
	_exit(127);
}

static bool can_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = fd >= 0 && connect(fd, (void *)&a, sizeof a) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Starts the broker with the environment set up by broker_suite_start
 * and waits for its listener. */
static bool start_broker(void)
{
	const char *dir = env("GS_TEST_AMQP_DIR");
	char log[300], pgid[32];
	snprintf(log, sizeof log, "%s/broker.out", dir);
	char *argv[] = { RABBITMQ_SERVER, NULL };
	pid_t pid = spawn(argv, log);
	if (pid < 0) {
		fail("broker: fork failed: %s", strerror(errno));
		return false;
	}
	tell_watchdog(pid);
	snprintf(pgid, sizeof pgid, "%ld\n", (long)pid);
	write_file(dir, "broker.pgid", pgid);
	int port = atoi(env("GS_TEST_AMQP_BROKER_PORT"));
	for (int i = 0; i < GS_TEST_BROKER_START_S * 10; i++) {
		if (can_connect(port))
			return true;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fail("broker: rabbitmq-server exited early; see %s",
			     log);
			return false;
		}
		struct timespec ts = { 0, 100000000L };
		nanosleep(&ts, NULL);
	}
	fail("broker: not listening after the start timeout; see %s", log);
	return false;
}

static void set_env_int(const char *name, int v)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%d", v);
	setenv(name, buf, 1);
}

void broker_suite_start(void)
{
	char dir[] = "/tmp/gs-amqp-XXXXXX";
	char path[600], text[1024];
	int ports[3];
	if (access(RABBITMQ_SERVER, X_OK)) {
		fail("broker: %s not found (scripts/bootstrap installs "
		     "rabbitmq-server)",
		     RABBITMQ_SERVER);
		return;
	}
	if (!mkdtemp(dir) || !free_ports(ports, 3)) {
		fail("broker: no temporary folder or ports: %s",
		     strerror(errno));
		return;
	}
	int pipefd[2];
	if (pipe(pipefd)) {
		fail("broker: pipe: %s", strerror(errno));
		return;
	}
	pid_t w = fork();
	if (w == 0) {
		setsid();
		close(pipefd[1]);
		watchdog(pipefd[0], dir);
	}
	close(pipefd[0]);
	set_env_int("GS_TEST_AMQP_WATCH_FD", pipefd[1]);
	setenv("GS_TEST_AMQP_DIR", dir, 1);
	set_env_int("GS_TEST_AMQP_BROKER_PORT", ports[0]);
	snprintf(text, sizeof text,
		 "listeners.tcp.default = 127.0.0.1:%d\n"
		 "loopback_users = none\n"
		 "log.console = false\n"
		 "log.file.level = warning\n"
		 "disk_free_limit.absolute = 1MB\n",
		 ports[0]);
	write_file(dir, "rabbitmq.conf", text);
	write_file(dir, "enabled_plugins", "[].\n");
	/* Everything the broker writes goes under dir; every port it
	 * listens on is on the loopback. */
	snprintf(path, sizeof path, "%s/rabbitmq.conf", dir);
	setenv("RABBITMQ_CONFIG_FILE", path, 1);
	snprintf(path, sizeof path, "%s/enabled_plugins", dir);
	setenv("RABBITMQ_ENABLED_PLUGINS_FILE", path, 1);
	snprintf(path, sizeof path, "%s/mnesia", dir);
	setenv("RABBITMQ_MNESIA_BASE", path, 1);
	snprintf(path, sizeof path, "%s/log", dir);
	setenv("RABBITMQ_LOG_BASE", path, 1);
	snprintf(path, sizeof path, "%s/plugins", dir);
	setenv("RABBITMQ_PLUGINS_EXPAND_DIR", path, 1);
	snprintf(path, sizeof path, "%s/advanced.config", dir);
	setenv("RABBITMQ_ADVANCED_CONFIG_FILE", path, 1);
	snprintf(path, sizeof path, "%s/rabbitmq-env.conf", dir);
	setenv("RABBITMQ_CONF_ENV_FILE", path, 1);
	snprintf(path, sizeof path, "gstest%ld@localhost", (long)getpid());
	setenv("RABBITMQ_NODENAME", path, 1);
	setenv("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1", 1);
	set_env_int("RABBITMQ_NODE_PORT", ports[0]);
	set_env_int("RABBITMQ_DIST_PORT", ports[1]);
	set_env_int("ERL_EPMD_PORT", ports[2]);
	setenv("ERL_EPMD_ADDRESS", "127.0.0.1", 1);
	setenv("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
	       "-kernel inet_dist_use_interface {127,0,0,1}", 1);
	setenv("HOME", dir, 1); /* the Erlang cookie */
	/* Our own epmd, so that the broker does not start a daemon one that
	 * would outlive the suite. */
	char port_arg[16];
	snprintf(port_arg, sizeof port_arg, "%d", ports[2]);
	char *epmd[] = { "epmd",     "-port",     port_arg,
			 "-address", "127.0.0.1", NULL };
	snprintf(path, sizeof path, "%s/epmd.out", dir);
	pid_t e = spawn(epmd, path);
	if (e > 0)
		tell_watchdog(e);
	for (int i = 0; i < 100 && !can_connect(ports[2]); i++) {
		struct timespec ts = { 0, 20000000L };
		nanosleep(&ts, NULL);
	}
	if (start_broker())
		set_env_int("GS_TEST_AMQP_PORT", ports[0]);
}

void broker_suite_stop(void)
{
	/* The watchdog does the killing and the removing. */
	int fd = atoi(env("GS_TEST_AMQP_WATCH_FD"));
	if (fd > 0)
		close(fd);
	while (wait(NULL) > 0 || errno == EINTR)
		;
}

static pid_t current_pgid(void)
{
	char path[600];
	snprintf(path, sizeof path, "%s/broker.pgid", env("GS_TEST_AMQP_DIR"));
	FILE *f = fopen(path, "r");
	long pgid = 0;
	if (f) {
		if (fscanf(f, "%ld", &pgid) != 1)
			pgid = 0;
		fclose(f);
	}
	return (pid_t)pgid;
}

void broker_kill9(void)
{
	pid_t g = current_pgid();
	int port = atoi(env("GS_TEST_AMQP_BROKER_PORT"));
	if (g > 0)
		kill(-g, SIGKILL);
	/* Gone once nothing listens any more. */
	for (int i = 0; i < 600 && can_connect(port); i++) {
		struct timespec ts = { 0, 50000000L };
		nanosleep(&ts, NULL);
	}
	waitpid(g, NULL, WNOHANG);
}

bool broker_restart(void)
{
	return start_broker();
}
