/*-------------------------------------------------------------------------
 *
 * webhookd.c
 *		  whoop-webhookd: receives WHOOP's webhooks over HTTP(S) and hands
 *		  each to whoop.receive_webhook() in the database.
 *
 *		  whoop-webhookd [-c] CONFIG_FILE
 *
 * It runs outside the postmaster on purpose: code that faces the internet
 * cannot crash or stall the database here, and it works as well with a
 * managed PostgreSQL, where no background worker can be installed.  It
 * holds no WHOOP secret: the signature is checked in the database, with
 * the client secret of the user mapping, and the event is committed there
 * before the answer (2XX) goes out.  Refusals are 401 (unsigned, forged,
 * replayed, unknown member -- alike, so that a prober learns nothing about
 * which members are linked), 400 (malformed), 413 (too large); an
 * unreachable database is 503, which WHOOP retries, so nothing is lost.
 *
 * Limits: at most max_connections connections, each a thread of
 * libmicrohttpd (beyond that new connections are closed at once); a body
 * of at most max_body bytes; request_timeout seconds to receive a whole
 * request, headers included -- libmicrohttpd's own timeout only counts
 * idle time, so a client trickling a byte now and then would keep its
 * connection for ever: a watchdog thread shuts such connections down.  One
 * request per connection (Connection: close): WHOOP sends one event per
 * request.  One log line per request on stderr, never a header value or
 * the body.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "webhookd.h"

#define WEBHOOKD_VERSION "1.1"
#define PATH_PREFIX "/whoop/"

/* A connection, from accept to close, as the watchdog sees it. */
typedef struct Tracked
{
	struct Tracked *prev;
	struct Tracked *next;
	int			fd;
	struct timespec started;
	bool		received;		/* the whole request is in: no deadline now */
	bool		cut;			/* shut down by the watchdog */
	char		remote[64];
} Tracked;

/* One request, from its headers to its answer. */
typedef struct Request
{
	Tracked    *tracked;
	struct timespec started;
	const char *server;			/* from the configuration */
	char		path[96];		/* printable, for the log */
	char	   *body;
	size_t		len;
	bool		answered;
} Request;

static WebhookdConfig config;
static Tracked *tracked_head;
static pthread_mutex_t tracked_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watchdog_wake;
static bool stopping;

static double elapsed_ms(const struct timespec *since);
static char *read_file(const char *path);
static void printable(char *dest, size_t size, const char *text);
static void *watchdog(void *arg);
static void notify_connection(void *cls, struct MHD_Connection *connection,
							  void **socket_context,
							  enum MHD_ConnectionNotificationCode code);
static void request_completed(void *cls, struct MHD_Connection *connection,
							  void **req_cls, enum MHD_RequestTerminationCode code);
static enum MHD_Result answer(struct MHD_Connection *connection, Request *req,
							  const WebhookdOutcome *outcome);
static enum MHD_Result refuse(struct MHD_Connection *connection, Request *req,
							  int http_status, const char *result, const char *why);
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *connection,
									  const char *url, const char *method,
									  const char *version, const char *upload_data,
									  size_t *upload_data_size, void **req_cls);
static void log_mhd(void *cls, const char *fmt, va_list ap);

/*
 * webhookd_log writes one line to stderr in one write(2), so that lines of
 * concurrent requests never interleave, prefixed with the UTC time.
 */
void
webhookd_log(const char *fmt,...)
{
	char		line[1024];
	struct timespec now;
	struct tm	tm;
	size_t		len;
	va_list		args;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	len += snprintf(line + len, sizeof(line) - len, ".%03ldZ ", now.tv_nsec / 1000000);
	va_start(args, fmt);
	vsnprintf(line + len, sizeof(line) - len - 1, fmt, args);
	va_end(args);
	len = strlen(line);
	line[len++] = '\n';
	if (write(STDERR_FILENO, line, len) < 0)
		return;
}

/*
 * log_mhd passes libmicrohttpd's own complaints (TLS handshakes that
 * failed, sockets that could not be accepted) to the log.
 */
static void
log_mhd(void *cls, const char *fmt, va_list ap)
{
	char		text[512];

	vsnprintf(text, sizeof(text), fmt, ap);
	text[strcspn(text, "\n")] = '\0';
	webhookd_log("libmicrohttpd: %s", text);
}

static double
elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000.0 + (now.tv_nsec - since->tv_nsec) / 1e6;
}

/*
 * printable copies TEXT with anything but printable ASCII replaced, cut to
 * SIZE: what a client sends never reaches the log raw.
 */
static void
printable(char *dest, size_t size, const char *text)
{
	size_t		i;

	for (i = 0; i + 1 < size && text[i] != '\0'; i++)
		dest[i] = (text[i] > 0x20 && text[i] < 0x7f) ? text[i] : '?';
	dest[i] = '\0';
}

/*
 * read_file reads a whole (small) file, for the certificate and key.
 */
static char *
read_file(const char *path)
{
	FILE	   *file = fopen(path, "r");
	char	   *data = NULL;
	size_t		len = 0;
	size_t		size = 0;

	if (file == NULL)
	{
		fprintf(stderr, "could not open \"%s\": %s\n", path, strerror(errno));
		return NULL;
	}
	for (;;)
	{
		size_t		n;

		if (len + 4096 + 1 > size)
		{
			char	   *grown = realloc(data, size = len + 65536);

			if (grown == NULL)
			{
				free(data);
				fclose(file);
				return NULL;
			}
			data = grown;
		}
		n = fread(data + len, 1, 4096, file);
		len += n;
		if (n < 4096)
			break;
	}
	fclose(file);
	data[len] = '\0';
	return data;
}

/*
 * watchdog shuts down the connections whose request has not fully arrived
 * within request_timeout seconds of the accept.  shutdown(2), not close:
 * libmicrohttpd's thread then sees the connection end and cleans up as
 * usual, and the descriptor stays its own until that thread closes it
 * (after the CLOSED notification, which takes tracked_lock).
 */
static void *
watchdog(void *arg)
{
	pthread_mutex_lock(&tracked_lock);
	while (!stopping)
	{
		struct timespec wake;

		for (Tracked *t = tracked_head; t != NULL; t = t->next)
		{
			if (!t->received && !t->cut && elapsed_ms(&t->started) > config.request_timeout * 1000.0)
			{
				shutdown(t->fd, SHUT_RDWR);
				t->cut = true;
				webhookd_log("%s - 408 timeout: request not received within %d s, connection closed",
							 t->remote, config.request_timeout);
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &wake);
		wake.tv_nsec += 250 * 1000000L;
		if (wake.tv_nsec >= 1000000000L)
		{
			wake.tv_sec++;
			wake.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&watchdog_wake, &tracked_lock, &wake);
	}
	pthread_mutex_unlock(&tracked_lock);
	return NULL;
}

/*
 * notify_connection keeps the watchdog's list of open connections.
 */
static void
notify_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
				  enum MHD_ConnectionNotificationCode code)
{
	Tracked    *t;

	if (code == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *fd_info =
			MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *addr_info =
			MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

		t = calloc(1, sizeof(Tracked));
		if (t == NULL || fd_info == NULL)
		{
			free(t);
			*socket_context = NULL;
			return;
		}
		t->fd = fd_info->connect_fd;
		clock_gettime(CLOCK_MONOTONIC, &t->started);
		strcpy(t->remote, "?");
		if (addr_info != NULL && addr_info->client_addr != NULL)
			getnameinfo(addr_info->client_addr,
						addr_info->client_addr->sa_family == AF_INET6
						? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
						t->remote, sizeof(t->remote), NULL, 0, NI_NUMERICHOST);
		pthread_mutex_lock(&tracked_lock);
		t->next = tracked_head;
		if (tracked_head != NULL)
			tracked_head->prev = t;
		tracked_head = t;
		pthread_mutex_unlock(&tracked_lock);
		*socket_context = t;
		return;
	}

	t = *socket_context;
	if (t == NULL)
		return;
	pthread_mutex_lock(&tracked_lock);
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		tracked_head = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	pthread_mutex_unlock(&tracked_lock);
	free(t);
	*socket_context = NULL;
}

/*
 * request_completed frees a request, and logs one that ended without an
 * answer (the client went away; a watchdog cut was logged already).
 */
static void
request_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
				  enum MHD_RequestTerminationCode code)
{
	Request    *req = *req_cls;

	if (req == NULL)
		return;
	if (!req->answered)
	{
		bool		cut;

		pthread_mutex_lock(&tracked_lock);
		cut = (req->tracked != NULL && req->tracked->cut);
		pthread_mutex_unlock(&tracked_lock);
		if (!cut)
			webhookd_log("%s %s - incomplete: the connection ended before the request did, bytes=%zu ms=%.1f",
						 req->tracked ? req->tracked->remote : "?", req->path, req->len,
						 elapsed_ms(&req->started));
	}
	free(req->body);
	free(req);
	*req_cls = NULL;
}

/*
 * answer sends OUTCOME's status with a one-word body (never the database's
 * message: that is for the log) and logs the request.
 */
static enum MHD_Result
answer(struct MHD_Connection *connection, Request *req, const WebhookdOutcome *outcome)
{
	const char *body;
	struct MHD_Response *response;
	enum MHD_Result ret;

	/* a short static body per status; the result word is the log's */
	switch (outcome->http_status)
	{
		case 200:
			body = (strcmp(outcome->result, "duplicate") == 0) ? "duplicate\n" : "queued\n";
			break;
		case 400:
			body = "malformed request\n";
			break;
		case 401:
			body = "refused\n";
			break;
		case 404:
			body = "not found\n";
			break;
		case 405:
			body = "method not allowed\n";
			break;
		case 413:
			body = "body too large\n";
			break;
		case 503:
			body = "database unavailable, retry later\n";
			break;
		default:
			body = "internal error\n";
			break;
	}
	response = MHD_create_response_from_buffer(strlen(body), (void *) body,
											   MHD_RESPMEM_PERSISTENT);
	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
	if (outcome->http_status == 405)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "POST");
	if (outcome->http_status == 503)
		MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, "60");
	ret = MHD_queue_response(connection, outcome->http_status, response);
	MHD_destroy_response(response);
	req->answered = true;

	if (outcome->sqlstate[0] != '\0' || outcome->message[0] != '\0')
		webhookd_log("%s %s %d %s bytes=%zu ms=%.1f sqlstate=%s \"%s\"",
					 req->tracked ? req->tracked->remote : "?", req->path,
					 outcome->http_status, outcome->result, req->len,
					 elapsed_ms(&req->started),
					 outcome->sqlstate[0] ? outcome->sqlstate : "-", outcome->message);
	else
		webhookd_log("%s %s %d %s bytes=%zu ms=%.1f",
					 req->tracked ? req->tracked->remote : "?", req->path,
					 outcome->http_status, outcome->result, req->len,
					 elapsed_ms(&req->started));
	return ret;
}

/*
 * refuse answers a request the receiver turns away itself, before the
 * database sees it.
 */
static enum MHD_Result
refuse(struct MHD_Connection *connection, Request *req, int http_status,
	   const char *result, const char *why)
{
	WebhookdOutcome outcome;

	memset(&outcome, 0, sizeof(outcome));
	outcome.http_status = http_status;
	snprintf(outcome.result, sizeof(outcome.result), "%s", result);
	snprintf(outcome.message, sizeof(outcome.message), "%s", why);
	return answer(connection, req, &outcome);
}

/*
 * handle_request is libmicrohttpd's access handler: called once the
 * headers are in, then for each piece of the body, then once more with
 * nothing when the body is complete.
 */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *connection, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_data_size, void **req_cls)
{
	Request    *req = *req_cls;
	WebhookdOutcome outcome;

	if (req == NULL)
	{
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		const char *length;
		char		what[80];
		char		verb[12];

		req = calloc(1, sizeof(Request));
		if (req == NULL)
			return MHD_NO;
		*req_cls = req;
		req->tracked = info ? info->socket_context : NULL;
		clock_gettime(CLOCK_MONOTONIC, &req->started);
		printable(verb, sizeof(verb), method);
		printable(what, sizeof(what), url);
		snprintf(req->path, sizeof(req->path), "%s %s", verb, what);

		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			return refuse(connection, req, 405, "method", "only POST is accepted");
		if (strncmp(url, PATH_PREFIX, strlen(PATH_PREFIX)) == 0)
		{
			for (int i = 0; i < config.nservers; i++)
			{
				if (strcmp(url + strlen(PATH_PREFIX), config.servers[i]) == 0)
					req->server = config.servers[i];
			}
		}
		if (req->server == NULL)
			return refuse(connection, req, 404, "not_found",
						  "the path is not /whoop/<server> for a configured server");
		length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
											 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (length != NULL && strtoull(length, NULL, 10) > (unsigned long long) config.max_body)
			return refuse(connection, req, 413, "too_large", "Content-Length exceeds max_body");
		req->body = malloc(config.max_body);
		if (req->body == NULL)
			return MHD_NO;
		return MHD_YES;
	}

	if (req->answered)
	{
		/* answered early: what else the client sends is not read */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		/*
		 * A body without Content-Length (chunked) that grows too large: no
		 * answer can be queued while it is still arriving, so the
		 * connection is closed.
		 */
		if (*upload_data_size > (size_t) config.max_body - req->len)
		{
			req->answered = true;
			webhookd_log("%s %s - too_large bytes>%d ms=%.1f: the body exceeds max_body, connection closed",
						 req->tracked ? req->tracked->remote : "?", req->path,
						 config.max_body, elapsed_ms(&req->started));
			return MHD_NO;
		}
		memcpy(req->body + req->len, upload_data, *upload_data_size);
		req->len += *upload_data_size;
		*upload_data_size = 0;
		return MHD_YES;
	}

	/* the whole request is in: from here on the database sets the pace */
	if (req->tracked != NULL)
	{
		pthread_mutex_lock(&tracked_lock);
		req->tracked->received = true;
		pthread_mutex_unlock(&tracked_lock);
	}
	webhookd_db_deliver(req->server,
						MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
													"X-WHOOP-Signature"),
						MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
													"X-WHOOP-Signature-Timestamp"),
						req->body, req->len, &outcome);
	return answer(connection, req, &outcome);
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	struct MHD_Daemon *daemon;
	struct sockaddr_storage address;
	socklen_t	address_len;
	unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_USE_ERROR_LOG;
	char	   *cert = NULL;
	char	   *key = NULL;
	sigset_t	signals;
	pthread_t	watchdog_thread;
	pthread_condattr_t attr;
	const union MHD_DaemonInfo *bound;
	int			signal_number;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--version") == 0)
		{
			printf("whoop-webhookd (whoop_fdw) %s\n", WEBHOOKD_VERSION);
			return 0;
		}
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (argv[i][0] != '-' && path == NULL)
			path = argv[i];
		else
		{
			fprintf(stderr, "usage: whoop-webhookd [-c] CONFIG_FILE\n");
			return 2;
		}
	}
	if (path == NULL)
	{
		fprintf(stderr, "usage: whoop-webhookd [-c] CONFIG_FILE\n");
		return 2;
	}
	if (!webhookd_read_config(path, &config))
		return 1;

	memset(&address, 0, sizeof(address));
	if (inet_pton(AF_INET, config.listen_address,
				  &((struct sockaddr_in *) &address)->sin_addr) == 1)
	{
		((struct sockaddr_in *) &address)->sin_family = AF_INET;
		((struct sockaddr_in *) &address)->sin_port = htons(config.port);
		address_len = sizeof(struct sockaddr_in);
	}
	else if (inet_pton(AF_INET6, config.listen_address,
					   &((struct sockaddr_in6 *) &address)->sin6_addr) == 1)
	{
		((struct sockaddr_in6 *) &address)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *) &address)->sin6_port = htons(config.port);
		address_len = sizeof(struct sockaddr_in6);
		flags |= MHD_USE_IPv6;
	}
	else
	{
		fprintf(stderr, "%s: listen_address \"%s\" is not a numeric IPv4 or IPv6 address\n",
				path, config.listen_address);
		return 1;
	}
	(void) address_len;

	if (config.tls_cert != NULL)
	{
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
		{
			fprintf(stderr, "this libmicrohttpd has no TLS support: unset tls_cert and tls_key and put an HTTPS proxy in front\n");
			return 1;
		}
		cert = read_file(config.tls_cert);
		key = read_file(config.tls_key);
		if (cert == NULL || key == NULL)
			return 1;
		flags |= MHD_USE_TLS;
	}

	/* every thread inherits the mask: only sigwait below takes these */
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	webhookd_db_init(&config);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&watchdog_wake, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&watchdog_thread, NULL, watchdog, NULL) != 0)
	{
		fprintf(stderr, "could not start the watchdog thread\n");
		return 1;
	}

	if (cert != NULL)
		daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle_request, NULL,
								  MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
								  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &address,
								  MHD_OPTION_CONNECTION_LIMIT, (unsigned int) config.max_connections,
								  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) config.request_timeout,
								  MHD_OPTION_NOTIFY_CONNECTION, notify_connection, NULL,
								  MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
								  MHD_OPTION_HTTPS_MEM_CERT, cert,
								  MHD_OPTION_HTTPS_MEM_KEY, key,
								  MHD_OPTION_HTTPS_PRIORITIES,
								  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2",
								  MHD_OPTION_END);
	else
		daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle_request, NULL,
								  MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
								  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &address,
								  MHD_OPTION_CONNECTION_LIMIT, (unsigned int) config.max_connections,
								  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) config.request_timeout,
								  MHD_OPTION_NOTIFY_CONNECTION, notify_connection, NULL,
								  MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
								  MHD_OPTION_END);
	if (daemon == NULL)
	{
		fprintf(stderr, "could not listen on %s port %d (see the libmicrohttpd message above)\n",
				config.listen_address, config.port);
		return 1;
	}
	/* the key stays only in libmicrohttpd's GnuTLS credentials */
	if (key != NULL)
	{
		explicit_bzero(key, strlen(key));
		free(key);
		free(cert);
	}
	bound = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	webhookd_log("whoop-webhookd %s listening on %s://%s:%u/whoop/<server> for %d server(s), "
				 "at most %d connections, %d-byte bodies, %d s per request",
				 WEBHOOKD_VERSION, cert ? "https" : "http", config.listen_address,
				 bound ? bound->port : (unsigned) config.port, config.nservers,
				 config.max_connections, config.max_body, config.request_timeout);

	do
	{
		if (sigwait(&signals, &signal_number) != 0)
			signal_number = SIGTERM;
		if (signal_number == SIGHUP)
			webhookd_log("SIGHUP ignored: restart the receiver to read its configuration again");
	} while (signal_number == SIGHUP);

	webhookd_log("signal %d: stopping (requests under way are finished)", signal_number);
	MHD_stop_daemon(daemon);
	pthread_mutex_lock(&tracked_lock);
	stopping = true;
	pthread_cond_signal(&watchdog_wake);
	pthread_mutex_unlock(&tracked_lock);
	pthread_join(watchdog_thread, NULL);
	webhookd_db_close();
	webhookd_log("stopped");
	return 0;
}
