// SPDX-License-Identifier: MIT
/*
 * The private broker's lifecycle. Criterion's runner must have no child
 * of ours that it did not spawn (its reaper does not expect one), so the
 * suite's runner starts a supervisor that detaches (a double fork, the
 * middle process reaped at once) and owns everything else: it starts
 * epmd and rabbitmq-server, each in a session of its own, restarts or
 * kills -9 the broker when the runner or a test asks through a FIFO in
 * the folder, and when the runner's pipe closes (the runner ended,
 * normally or not) kills them all and removes the folder. Tests (the
 * runner's children) find the broker through environment variables.
 */
#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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
#define RABBITMQCTL "/usr/lib/rabbitmq/bin/rabbitmqctl"

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

/* Commands from the runner and the tests to the supervisor. */
enum { CMD_START = 'S', CMD_KILL = 'K' };

static pid_t spawn_broker(const char *dir)
{
	char log[300];
	snprintf(log, sizeof log, "%s/broker.out", dir);
	char *argv[] = { RABBITMQ_SERVER, NULL };
	return spawn(argv, log);
}

/* The supervisor's loop: runs until the pipe closes. */
static void supervise(int rd, const char *dir, int epmd_port)
{
	char port_arg[16], log[300];
	/* Hold none of the runner's files open (a test harness waits for
	 * its output pipes to close). */
	int null = open("/dev/null", O_RDWR);
	for (int i = 0; i < 3 && null >= 0; i++)
		dup2(null, i);
	for (int i = 3; i < 1024; i++)
		if (i != rd)
			close(i);
	snprintf(port_arg, sizeof port_arg, "%d", epmd_port);
	snprintf(log, sizeof log, "%s/epmd.out", dir);
	/* Our own epmd, so that the broker does not start a daemon one that
	 * would outlive the suite. */
	char *epmd[] = { "epmd",     "-port",     port_arg,
			 "-address", "127.0.0.1", NULL };
	pid_t e = spawn(epmd, log);
	for (int i = 0; i < 100 && !can_connect(epmd_port); i++) {
		struct timespec ts = { 0, 20000000L };
		nanosleep(&ts, NULL);
	}
	/* Commands come through a FIFO (tests cannot inherit our pipe);
	 * opened for writing too, so that it never reads end-of-file. */
	char fifo[300];
	snprintf(fifo, sizeof fifo, "%s/control", dir);
	struct pollfd fds[2] = { { .fd = rd, .events = POLLIN },
				 { .fd = open(fifo, O_RDWR),
				   .events = POLLIN } };
	pid_t b = 0;
	for (;;) {
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			break;
		char cmd;
		if (fds[0].revents)
			break; /* the runner's end closed */
		/* The broker's orphans, and the broker itself if it died on
		 * its own (a crash, the OOM killer): reaped before the command,
		 * so that a start does not take a dead broker for a running
		 * one, nor a kill signal a recycled process group. */
		for (pid_t w; (w = waitpid(-1, NULL, WNOHANG)) > 0;)
			if (w == b)
				b = 0;
			else if (w == e)
				e = 0;
		if (!fds[1].revents || read(fds[1].fd, &cmd, 1) != 1)
			continue;
		if (cmd == CMD_KILL && b > 0) {
			kill(-b, SIGKILL);
			waitpid(b, NULL, 0);
			b = 0;
		} else if (cmd == CMD_START && b <= 0) {
			b = spawn_broker(dir);
		}
	}
	if (b > 0)
		kill(-b, SIGKILL);
	if (e > 0)
		kill(-e, SIGKILL);
	while (wait(NULL) > 0)
		;
	pid_t rm = fork();
	if (rm == 0) {
		execl("/bin/rm", "rm", "-rf", dir, (char *)NULL);
		_exit(127);
	}
	if (rm > 0)
		waitpid(rm, NULL, 0);
	_exit(0);
}

static void command(char cmd)
{
	char fifo[300];
	snprintf(fifo, sizeof fifo, "%s/control", env("GS_TEST_AMQP_DIR"));
	int fd = open(fifo, O_WRONLY);
	if (fd < 0 || write(fd, &cmd, 1) != 1)
		perror("broker: telling the supervisor");
	if (fd >= 0)
		close(fd);
}

/* Waits until the broker listens (true) or the start timeout passes. */
static bool wait_listening(void)
{
	int port = atoi(env("GS_TEST_AMQP_BROKER_PORT"));
	for (int i = 0; i < GS_TEST_BROKER_START_S * 10; i++) {
		if (can_connect(port))
			return true;
		struct timespec ts = { 0, 100000000L };
		nanosleep(&ts, NULL);
	}
	fail("broker: not listening after the start timeout; see "
	     "%s/broker.out",
	     env("GS_TEST_AMQP_DIR"));
	return false;
}

static void set_env_int(const char *name, int v)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%d", v);
	setenv(name, buf, 1);
}

/* The broker's environment: everything it writes under dir, every port
 * it listens on on the loopback. */
static void broker_env(const char *dir, const int ports[3])
{
	char path[600], text[1024];
	snprintf(text, sizeof text,
		 "listeners.tcp.default = 127.0.0.1:%d\n"
		 "loopback_users = none\n"
		 "log.console = false\n"
		 "log.file.level = warning\n"
		 "disk_free_limit.absolute = 1MB\n",
		 ports[0]);
	write_file(dir, "rabbitmq.conf", text);
	write_file(dir, "enabled_plugins", "[].\n");
	static const char *const files[][2] = {
		{ "RABBITMQ_CONFIG_FILE", "rabbitmq.conf" },
		{ "RABBITMQ_ENABLED_PLUGINS_FILE", "enabled_plugins" },
		{ "RABBITMQ_MNESIA_BASE", "mnesia" },
		{ "RABBITMQ_LOG_BASE", "log" },
		{ "RABBITMQ_PLUGINS_EXPAND_DIR", "plugins" },
		{ "RABBITMQ_ADVANCED_CONFIG_FILE", "advanced.config" },
		{ "RABBITMQ_CONF_ENV_FILE", "rabbitmq-env.conf" },
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i][1]);
		setenv(files[i][0], path, 1);
	}
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
}

void broker_suite_start(void)
{
	char dir[] = "/tmp/gs-amqp-XXXXXX";
	int ports[3], pipefd[2];
	if (access(RABBITMQ_SERVER, X_OK)) {
		fail("broker: %s not found (scripts/bootstrap installs "
		     "rabbitmq-server)",
		     RABBITMQ_SERVER);
		return;
	}
	char fifo[300];
	if (!mkdtemp(dir) || !free_ports(ports, 3) || pipe(pipefd) ||
	    (snprintf(fifo, sizeof fifo, "%s/control", dir),
	     mkfifo(fifo, 0600))) {
		fail("broker: no temporary folder, ports or pipe: %s",
		     strerror(errno));
		return;
	}
	setenv("GS_TEST_AMQP_DIR", dir, 1);
	set_env_int("GS_TEST_AMQP_BROKER_PORT", ports[0]);
	set_env_int("GS_TEST_AMQP_WATCH_FD", pipefd[1]);
	broker_env(dir, ports);
	pid_t mid = fork();
	if (mid == 0) {
		setsid();
		close(pipefd[1]);
		if (fork() == 0)
			supervise(pipefd[0], dir, ports[2]);
		_exit(0);
	}
	close(pipefd[0]);
	if (mid > 0)
		waitpid(mid, NULL, 0);
	command(CMD_START);
	if (wait_listening())
		set_env_int("GS_TEST_AMQP_PORT", ports[0]);
}

void broker_suite_stop(void)
{
	/* The supervisor does the killing and the removing. */
	int fd = atoi(env("GS_TEST_AMQP_WATCH_FD"));
	if (fd > 0)
		close(fd);
}

void broker_kill9(void)
{
	int port = atoi(env("GS_TEST_AMQP_BROKER_PORT"));
	command(CMD_KILL);
	/* Gone once nothing listens any more. */
	for (int i = 0; i < 600 && can_connect(port); i++) {
		struct timespec ts = { 0, 50000000L };
		nanosleep(&ts, NULL);
	}
}

bool broker_sync_metadata(void)
{
	char log[300];
	snprintf(log, sizeof log, "%s/rabbitmqctl.out",
		 env("GS_TEST_AMQP_DIR"));
	char *argv[] = { RABBITMQCTL, "eval", "mnesia:sync_log().", NULL };
	pid_t pid = spawn(argv, log);
	int status = 0;
	bool ok = pid > 0 && waitpid(pid, &status, 0) == pid &&
		  WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!ok)
		snprintf(error_msg, sizeof error_msg,
			 "broker: rabbitmqctl eval failed; see %s", log);
	return ok;
}

bool broker_restart(void)
{
	command(CMD_START);
	return wait_listening();
}

bool broker_ensure(void)
{
	if (broker_port() <= 0)
		return false;
	return can_connect(broker_port()) || broker_restart();
}
