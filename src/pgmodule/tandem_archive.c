/*
 * tandem_archive: a PostgreSQL 15 archive module (archive_library) that hands each WAL
 * file to the running `tandem wal-archiver` over a unix socket, instead of forking
 * `sh -c 'tandem wal-push ...'` per file as archive_command does.
 *
 * It runs inside PostgreSQL's archiver process, one file at a time:
 *   - the connection to tandem_archive.socket is kept across files and made anew after
 *     any error;
 *   - a request is one line "archive <file>\n"; the answer is one line, "stored\n" (the
 *     file is durably in the repository, or an identical copy was there) or
 *     "error <message>\n";
 *   - the callback returns true only on "stored". An error answer becomes a WARNING with
 *     the archiver's message, and false: PostgreSQL keeps the file .ready and retries;
 *   - when the socket cannot be reached (no archiver running: not the leader yet, crashed,
 *     stopped), tandem_archive.fallback_command runs instead, like archive_command (%p,
 *     %f, %%), so archiving never depends on the archiver process;
 *   - waiting for an answer is bounded (tandem_archive.timeout, then the fallback
 *     command runs: a hung archiver does not stop archiving) and wakes on the archiver
 *     process's latch, so a shutdown request is not held up by a slow push.
 *
 * Settings (PGC_SIGHUP): tandem_archive.socket, tandem_archive.fallback_command,
 * tandem_archive.timeout. The agent writes the first two to tandem.conf
 * (src/pg/managed_config). The code follows PostgreSQL's own style (pgindent), as an
 * extension of it, not Tandem's C++ format.
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "postmaster/pgarch.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_MODULE_MAGIC;

void _PG_init(void);
void _PG_archive_module_init(ArchiveModuleCallbacks *cb);

/* Settings. */
static char *socket_path = NULL;
static char *fallback_command = NULL;
static int request_timeout_s = 300;

/* The connection to the wal-archiver, and the path it was made to (a reload may change it). */
static int archiver_fd = -1;
static char connected_path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
/* Logged once per outage, not once per file. */
static bool unreachable_logged = false;

/* The longest answer line we accept (the archiver's error messages are shorter). */
#define MAX_ANSWER 8192

typedef enum
{
	ASK_STORED,					/* the archiver answered "stored" */
	ASK_REFUSED,				/* the archiver answered with an error */
	ASK_UNREACHABLE,			/* no archiver to talk to: use the fallback */
	ASK_TIMEOUT,				/* no answer in time (a hung archiver): use the fallback */
	ASK_GAVE_UP,				/* shutdown, or a broken answer: not archived this time */
	ASK_READY					/* internal: the socket is ready for the next read/write */
} AskResult;

static bool tandem_archive_configured(void);
static bool tandem_archive_file(const char *file, const char *path);
static void tandem_archive_shutdown(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("tandem_archive.socket",
							   "Unix socket of the tandem WAL archiver.",
							   "Empty: always use tandem_archive.fallback_command.",
							   &socket_path, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("tandem_archive.fallback_command",
							   "Shell command archiving a file when the WAL archiver cannot be reached.",
							   "Like archive_command: %p is the file's path, %f its name, %% a percent sign.",
							   &fallback_command, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tandem_archive.timeout",
							"Longest wait for the WAL archiver's answer about one file.",
							"After it the fallback command archives the file.",
							&request_timeout_s, 300, 1, 86400, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	MarkGUCPrefixReserved("tandem_archive");
}

void
_PG_archive_module_init(ArchiveModuleCallbacks *cb)
{
	cb->check_configured_cb = tandem_archive_configured;
	cb->archive_file_cb = tandem_archive_file;
	cb->shutdown_cb = tandem_archive_shutdown;
}

static bool
tandem_archive_configured(void)
{
	return (socket_path != NULL && socket_path[0] != '\0') ||
		(fallback_command != NULL && fallback_command[0] != '\0');
}

static void
disconnect(void)
{
	if (archiver_fd >= 0)
		close(archiver_fd);
	archiver_fd = -1;
}

static void
tandem_archive_shutdown(void)
{
	disconnect();
}

/* Connects (non-blocking) to socket_path; false when nobody listens there. */
static bool
connect_archiver(void)
{
	struct sockaddr_un addr;
	int			fd;

	if (strlen(socket_path) >= sizeof(addr.sun_path))
	{
		ereport(WARNING,
				(errmsg("tandem_archive.socket \"%s\" is too long for a unix socket path (at most %zu bytes)",
						socket_path, sizeof(addr.sun_path) - 1)));
		return false;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strlcpy(addr.sun_path, socket_path, sizeof(addr.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
	{
		ereport(WARNING, (errmsg("tandem_archive: could not create a unix socket: %m")));
		return false;
	}
	/* A unix socket connects at once or not at all (EAGAIN: its backlog is full). */
	if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
	{
		int			save_errno = errno;

		close(fd);
		errno = save_errno;
		if (!unreachable_logged)
			ereport(LOG,
					(errmsg("tandem_archive: cannot reach the WAL archiver at \"%s\": %m; using the fallback command until it answers",
							socket_path)));
		unreachable_logged = true;
		return false;
	}
	if (unreachable_logged)
		ereport(LOG, (errmsg("tandem_archive: connected to the WAL archiver at \"%s\"", socket_path)));
	unreachable_logged = false;
	archiver_fd = fd;
	strlcpy(connected_path, socket_path, sizeof(connected_path));
	return true;
}

/* Waits until the socket is readable/writable (events: WL_SOCKET_*): ASK_READY, or why not. */
static AskResult
wait_socket(int events, TimestampTz deadline, const char *file)
{
	for (;;)
	{
		long		left_ms;
		int			rc;

		if (ShutdownRequestPending)
		{
			ereport(LOG,
					(errmsg("tandem_archive: shutdown requested while the WAL archiver was archiving \"%s\"; PostgreSQL will ask again",
							file)));
			return ASK_GAVE_UP;
		}
		left_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left_ms <= 0)
		{
			ereport(WARNING,
					(errmsg("tandem_archive: no answer from the WAL archiver about \"%s\" within %d s; using the fallback command",
							file, request_timeout_s)));
			return ASK_TIMEOUT;
		}
		rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
							   archiver_fd, left_ms, WAIT_EVENT_ARCHIVE_COMMAND);
		if (rc & WL_LATCH_SET)
		{
			/*
			 * A signal: new ready files (nothing to do now; the archiver loop
			 * finds them), a reload or a shutdown request (checked above).
			 */
			ResetLatch(MyLatch);
		}
		if (rc & events)
			return ASK_READY;
	}
}

/*
 * One request on the current connection. ASK_UNREACHABLE when the connection failed
 * before an answer (the caller may reconnect).
 */
static AskResult
request_once(const char *file, TimestampTz deadline, StringInfo answer)
{
	char		request[MAXPGPATH + 16];
	size_t		len;
	size_t		sent = 0;

	len = snprintf(request, sizeof(request), "archive %s\n", file);
	if (len >= sizeof(request))
	{
		ereport(WARNING, (errmsg("tandem_archive: file name \"%s\" is too long", file)));
		return ASK_GAVE_UP;
	}
	while (sent < len)
	{
		ssize_t		n = send(archiver_fd, request + sent, len - sent, MSG_NOSIGNAL);

		if (n > 0)
		{
			sent += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		{
			AskResult	w = wait_socket(WL_SOCKET_WRITEABLE, deadline, file);

			if (w != ASK_READY)
				return w;
			continue;
		}
		return ASK_UNREACHABLE;
	}
	resetStringInfo(answer);
	for (;;)
	{
		char		buf[512];
		ssize_t		n = recv(archiver_fd, buf, sizeof(buf), 0);

		if (n > 0)
		{
			char	   *nl = memchr(buf, '\n', n);

			appendBinaryStringInfo(answer, buf, nl != NULL ? nl - buf : n);
			if (nl != NULL)
			{
				/* One request at a time: nothing may follow the answer. */
				if (nl + 1 != buf + n)
				{
					ereport(WARNING, (errmsg("tandem_archive: the WAL archiver sent more than one answer")));
					return ASK_UNREACHABLE;
				}
				return ASK_STORED;
			}
			if (answer->len > MAX_ANSWER)
			{
				ereport(WARNING, (errmsg("tandem_archive: the WAL archiver's answer is too long")));
				return ASK_UNREACHABLE;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		{
			AskResult	w = wait_socket(WL_SOCKET_READABLE, deadline, file);

			if (w != ASK_READY)
				return w;
			continue;
		}
		return ASK_UNREACHABLE; /* closed (0) or failed */
	}
}

/* Asks the wal-archiver to archive `file`; on ASK_REFUSED, `answer` holds its message. */
static AskResult
ask_archiver(const char *file, StringInfo answer)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   (int64) request_timeout_s * 1000);
	int			attempt;

	if (archiver_fd >= 0 && strcmp(connected_path, socket_path) != 0)
		disconnect();			/* the socket setting changed */
	/*
	 * A kept connection may have been closed by an archiver that restarted since:
	 * try once more on a fresh one before falling back.
	 */
	for (attempt = 0; attempt < 2; attempt++)
	{
		bool		fresh = archiver_fd < 0;
		AskResult	r;

		if (fresh && !connect_archiver())
			return ASK_UNREACHABLE;
		r = request_once(file, deadline, answer);
		if (r == ASK_STORED)
		{
			if (strcmp(answer->data, "stored") == 0)
				return ASK_STORED;
			if (strncmp(answer->data, "error ", 6) == 0)
			{
				/* The archiver's message, without the word. */
				memmove(answer->data, answer->data + 6, answer->len - 6 + 1);
				answer->len -= 6;
				return ASK_REFUSED;
			}
			ereport(WARNING,
					(errmsg("tandem_archive: unexpected answer from the WAL archiver about \"%s\"", file)));
			disconnect();
			return ASK_GAVE_UP;
		}
		disconnect();
		if (r != ASK_UNREACHABLE || fresh)
			return r;
	}
	return ASK_UNREACHABLE;
}

/* archive_command semantics, as PostgreSQL's shell_archive: %p, %f, %%. */
static bool
run_fallback(const char *file, const char *path)
{
	StringInfoData cmd;
	const char *sp;
	int			rc;

	initStringInfo(&cmd);
	for (sp = fallback_command; *sp; sp++)
	{
		if (sp[0] == '%' && sp[1] == 'p')
		{
			appendStringInfoString(&cmd, path);
			sp++;
		}
		else if (sp[0] == '%' && sp[1] == 'f')
		{
			appendStringInfoString(&cmd, file);
			sp++;
		}
		else if (sp[0] == '%' && sp[1] == '%')
		{
			appendStringInfoChar(&cmd, '%');
			sp++;
		}
		else
			appendStringInfoChar(&cmd, *sp);
	}
	ereport(DEBUG3, (errmsg_internal("tandem_archive: executing fallback command \"%s\"", cmd.data)));
	fflush(NULL);
	pgstat_report_wait_start(WAIT_EVENT_ARCHIVE_COMMAND);
	rc = system(cmd.data);
	pgstat_report_wait_end();
	if (rc != 0)
	{
		/* Like shell_archive: a command killed by a signal takes the archiver down. */
		int			lev = wait_result_is_any_signal(rc, true) ? FATAL : LOG;

		ereport(lev,
				(errmsg("tandem_archive: fallback command for \"%s\" failed: %s", file, wait_result_to_str(rc)),
				 errdetail("The failed command was: %s", cmd.data)));
		pfree(cmd.data);
		return false;
	}
	pfree(cmd.data);
	return true;
}

static bool
tandem_archive_file(const char *file, const char *path)
{
	bool		have_socket = socket_path != NULL && socket_path[0] != '\0';
	bool		have_fallback = fallback_command != NULL && fallback_command[0] != '\0';

	if (have_socket)
	{
		StringInfoData answer;
		AskResult	r;

		initStringInfo(&answer);
		r = ask_archiver(file, &answer);
		if (r == ASK_STORED)
		{
			pfree(answer.data);
			ereport(DEBUG1, (errmsg_internal("tandem_archive: \"%s\" stored by the WAL archiver", file)));
			return true;
		}
		if (r == ASK_REFUSED)
			ereport(WARNING,
					(errmsg("tandem_archive: the WAL archiver did not archive \"%s\": %s", file, answer.data)));
		pfree(answer.data);
		if (r != ASK_UNREACHABLE && r != ASK_TIMEOUT)
			return false;
	}
	if (!have_fallback)
	{
		ereport(WARNING,
				(errmsg("tandem_archive: cannot archive \"%s\": the WAL archiver cannot be reached and tandem_archive.fallback_command is empty",
						file)));
		return false;
	}
	return run_fallback(file, path);
}
