/*-------------------------------------------------------------------------
 *
 * webhookd.h
 *		  Declarations shared by the files of whoop-webhookd, the receiver
 *		  of WHOOP webhooks.
 *
 * webhookd.c (HTTP with libmicrohttpd: requests, limits, the log)
 * uses db.c (libpq: a small pool of connections that hands each delivery
 * to whoop.receive_webhook()) and config.c (the configuration file).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WHOOP_WEBHOOKD_H
#define WHOOP_WEBHOOKD_H

#include <stdbool.h>
#include <stddef.h>

/* config.c -- the configuration file */

typedef struct WebhookdConfig
{
	char	   *listen_address;	/* numeric IPv4 or IPv6 address */
	int			port;
	char	   *tls_cert;		/* PEM files; both or neither */
	char	   *tls_key;
	char	   *conninfo;		/* libpq connection string, no password */
	char	  **servers;		/* POST /whoop/<server> for each */
	int			nservers;
	int			max_body;		/* bytes */
	int			max_connections;
	int			request_timeout;	/* seconds to receive a whole request */
	int			db_connections;
	int			db_wait;		/* seconds a request waits for a connection */
	int			statement_timeout;	/* seconds */
} WebhookdConfig;

extern bool webhookd_read_config(const char *path, WebhookdConfig *config);

/* db.c -- handing a delivery to the database */

/* How a delivery ended, and the HTTP status that says so. */
typedef struct WebhookdOutcome
{
	int			http_status;
	char		result[16];		/* queued, duplicate, refused, ... */
	char		sqlstate[6];	/* "" when the database gave none */
	char		message[256];	/* the server's or libpq's, for the log */
} WebhookdOutcome;

extern void webhookd_db_init(const WebhookdConfig *config);
extern void webhookd_db_deliver(const char *server, const char *signature,
								const char *timestamp, const char *body,
								size_t body_len, WebhookdOutcome *outcome);
extern void webhookd_db_close(void);

/* webhookd.c -- the log */

extern void webhookd_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));

#endif							/* WHOOP_WEBHOOKD_H */
