/*-------------------------------------------------------------------------
 *
 * config.c
 *		  whoop-webhookd's configuration file: "key = value" lines, "#"
 *		  comments, blank lines.
 *
 * An unknown key, a missing required one or a value out of range stops the
 * daemon at start with the line that is wrong: a receiver that silently
 * ignored a misspelt limit would run without it.  The file holds no secret
 * (the database password belongs in a .pgpass file), but conninfo is
 * never logged all the same.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhookd.h"

typedef enum KeyKind
{
	KEY_TEXT,
	KEY_INT,
	KEY_LIST
} KeyKind;

typedef struct Key
{
	const char *name;
	KeyKind		kind;
	size_t		offset;
	int			min;
	int			max;
} Key;

#define TEXT_KEY(name) {#name, KEY_TEXT, offsetof(WebhookdConfig, name), 0, 0}
#define INT_KEY(name, min, max) {#name, KEY_INT, offsetof(WebhookdConfig, name), min, max}

static const Key keys[] = {
	TEXT_KEY(listen_address),
	INT_KEY(port, 0, 65535),
	TEXT_KEY(tls_cert),
	TEXT_KEY(tls_key),
	TEXT_KEY(conninfo),
	{"servers", KEY_LIST, offsetof(WebhookdConfig, servers), 0, 0},
	INT_KEY(max_body, 64, 1048576),
	INT_KEY(max_connections, 1, 10000),
	INT_KEY(request_timeout, 1, 3600),
	INT_KEY(db_connections, 1, 100),
	INT_KEY(db_wait, 1, 600),
	INT_KEY(statement_timeout, 1, 600),
};

static char *trim(char *text);
static bool set_value(const Key *key, char *value, WebhookdConfig *config,
					  const char *path, int line);
static bool valid_server_name(const char *name);

/*
 * trim cuts blanks off both ends of TEXT, in place.
 */
static char *
trim(char *text)
{
	char	   *end;

	while (isspace((unsigned char) *text))
		text++;
	end = text + strlen(text);
	while (end > text && isspace((unsigned char) end[-1]))
		*--end = '\0';
	return text;
}

/*
 * valid_server_name accepts what can stand in a URL path segment as it is:
 * letters, digits and _ - . (PostgreSQL allows more in a server name, but
 * then it must be written differently in the URL than in SQL).
 */
static bool
valid_server_name(const char *name)
{
	if (*name == '\0' || strlen(name) > 63)
		return false;
	for (const char *p = name; *p; p++)
	{
		if (!isalnum((unsigned char) *p) && *p != '_' && *p != '-' && *p != '.')
			return false;
	}
	return true;
}

/*
 * set_value stores one value, checked; complains with the file and line.
 */
static bool
set_value(const Key *key, char *value, WebhookdConfig *config, const char *path,
		  int line)
{
	void	   *field = (char *) config + key->offset;

	if (key->kind == KEY_TEXT)
	{
		char	  **text = field;

		/* an empty value unsets: "tls_cert =" means plain HTTP */
		free(*text);
		*text = (*value != '\0') ? strdup(value) : NULL;
		return *value == '\0' || *text != NULL;
	}
	if (key->kind == KEY_INT)
	{
		char	   *end;
		long		number;

		errno = 0;
		number = strtol(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' ||
			number < key->min || number > key->max)
		{
			fprintf(stderr, "%s:%d: %s must be an integer from %d to %d\n",
					path, line, key->name, key->min, key->max);
			return false;
		}
		*(int *) field = (int) number;
		return true;
	}

	/* servers: a comma-separated list */
	for (char *item = strtok(value, ","); item != NULL; item = strtok(NULL, ","))
	{
		char	   *name = trim(item);
		char	  **grown;

		if (!valid_server_name(name))
		{
			fprintf(stderr, "%s:%d: \"%s\" is not a server name this receiver accepts (letters, digits, _ - . only)\n",
					path, line, name);
			return false;
		}
		grown = realloc(config->servers, sizeof(char *) * (config->nservers + 1));
		if (grown == NULL)
			return false;
		config->servers = grown;
		config->servers[config->nservers] = strdup(name);
		if (config->servers[config->nservers] == NULL)
			return false;
		config->nservers++;
	}
	return true;
}

/*
 * webhookd_read_config reads PATH over the defaults; false (after saying
 * why on stderr) when it cannot be used.
 */
bool
webhookd_read_config(const char *path, WebhookdConfig *config)
{
	FILE	   *file = fopen(path, "r");
	char		buffer[4096];
	int			line = 0;
	bool		ok = true;

	memset(config, 0, sizeof(WebhookdConfig));
	config->listen_address = strdup("127.0.0.1");
	config->port = 8443;
	config->max_body = 4096;
	config->max_connections = 64;
	config->request_timeout = 10;
	config->db_connections = 4;
	config->db_wait = 5;
	config->statement_timeout = 5;

	if (file == NULL)
	{
		fprintf(stderr, "could not open configuration file \"%s\": %s\n", path, strerror(errno));
		return false;
	}
	while (ok && fgets(buffer, sizeof(buffer), file) != NULL)
	{
		char	   *text;
		char	   *equals;
		char	   *name;
		const Key  *key = NULL;

		line++;
		if (strchr(buffer, '\n') == NULL && !feof(file))
		{
			fprintf(stderr, "%s:%d: line too long\n", path, line);
			ok = false;
			break;
		}
		text = buffer;
		if (strchr(text, '#') != NULL)
			*strchr(text, '#') = '\0';
		text = trim(text);
		if (*text == '\0')
			continue;
		equals = strchr(text, '=');
		if (equals == NULL)
		{
			fprintf(stderr, "%s:%d: expected \"key = value\"\n", path, line);
			ok = false;
			break;
		}
		*equals = '\0';
		name = trim(text);
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		{
			if (strcmp(keys[i].name, name) == 0)
				key = &keys[i];
		}
		if (key == NULL)
		{
			fprintf(stderr, "%s:%d: unknown key \"%s\"\n", path, line, name);
			ok = false;
			break;
		}
		ok = set_value(key, trim(equals + 1), config, path, line);
	}
	fclose(file);
	if (!ok)
		return false;

	if (config->conninfo == NULL)
	{
		fprintf(stderr, "%s: conninfo is required (a libpq connection string; the password goes in a .pgpass file)\n", path);
		return false;
	}
	if (config->nservers == 0)
	{
		fprintf(stderr, "%s: servers is required: the whoop_fdw servers whose webhooks are received, POST /whoop/<server>\n", path);
		return false;
	}
	if ((config->tls_cert == NULL) != (config->tls_key == NULL))
	{
		fprintf(stderr, "%s: tls_cert and tls_key go together: set both for HTTPS, neither for plain HTTP behind a proxy\n", path);
		return false;
	}
	return true;
}
