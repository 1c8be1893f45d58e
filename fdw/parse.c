/*-------------------------------------------------------------------------
 *
 * parse.c
 *		  Small parsers of what WHOOP sends: rate-limit header lines, ISO-8601
 *		  timestamps, and printable excerpts of response bodies.
 *
 * They read outside input, so they are kept apart from the code that talks
 * to libcurl or to the server: besides palloc they use only date2j() and
 * pg_strncasecmp(), and the fuzz targets in test/fuzz/ link this file as
 * it is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>

#include "whoop_fdw.h"

#include "utils/datetime.h"

/*
 * parse_leading_int reads a non-negative integer after optional blanks.
 */
static bool
parse_leading_int(const char *p, const char *end, int *out)
{
	int64		value = 0;
	bool		any = false;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (p < end && isdigit((unsigned char) *p))
	{
		value = value * 10 + (*p - '0');
		if (value > INT_MAX)
			return false;
		any = true;
		p++;
	}
	if (any)
		*out = (int) value;
	return any;
}

/*
 * whoop_rate_limit_init marks every field of RATE as not seen.
 */
void
whoop_rate_limit_init(WhoopRateLimit *rate)
{
	rate->limit = rate->remaining = rate->reset_s = -1;
	rate->window_s[0] = rate->window_s[1] = -1;
	rate->described = -1;
}

/*
 * parse_limit_windows reads the "n;window=s" entries of a Limit header
 * value (P to END, after the colon) whose first number is LIMIT: it sets
 * the shortest and longest window and which of them LIMIT is the limit of
 * (with no leading bare number, the first entry's window).  When both
 * windows have that limit, the shorter is taken.  Entries it cannot read
 * are skipped; with none, nothing is set.
 */
static void
parse_limit_windows(const char *p, const char *end, int limit, WhoopRateLimit *rate)
{
	static const char key[] = "window=";
	double		shortest = -1;
	double		longest = -1;
	double		limit_window = -1;
	double		first_window = -1;
	const char *first_stop = memchr(p, ',', end - p);
	bool		bare = memchr(p, ';', (first_stop ? first_stop : end) - p) == NULL;

	while (p < end)
	{
		const char *comma = memchr(p, ',', end - p);
		const char *stop = comma ? comma : end;
		const char *semi = memchr(p, ';', stop - p);
		const char *w;
		char		number[32];
		size_t		len;
		char	   *number_end;
		double		window;
		int			n;

		if (semi == NULL || !parse_leading_int(p, semi, &n))
		{
			p = comma ? comma + 1 : end;
			continue;
		}
		p = comma ? comma + 1 : end;
		w = semi + 1;
		while (w < stop && (*w == ' ' || *w == '\t'))
			w++;
		len = stop - w;
		if (len <= sizeof(key) - 1 || len - (sizeof(key) - 1) >= sizeof(number) ||
			pg_strncasecmp(w, key, sizeof(key) - 1) != 0)
			continue;
		memcpy(number, w + sizeof(key) - 1, len - (sizeof(key) - 1));
		number[len - (sizeof(key) - 1)] = '\0';
		window = strtod(number, &number_end);
		while (*number_end == ' ' || *number_end == '\t' ||
			   *number_end == '\r' || *number_end == '\n')
			number_end++;
		if (number_end == number || *number_end != '\0' || !(window > 0 && window < 1e9))
			continue;
		if (first_window < 0)
			first_window = window;
		if (shortest < 0 || window < shortest)
			shortest = window;
		if (window > longest)
			longest = window;
		if (n == limit && (limit_window < 0 || window < limit_window))
			limit_window = window;
	}
	if (shortest < 0)
		return;
	rate->window_s[0] = shortest;
	rate->window_s[1] = longest;
	if (!bare)
		limit_window = first_window;
	if (limit_window > 0)
		rate->described = limit_window == shortest ? 0 : 1;
}

/*
 * whoop_parse_rate_limit_header parses one header line if it is one of
 * WHOOP's X-RateLimit-Limit/Remaining/Reset headers.  For Limit, the first
 * number is taken: "100, 100;window=60, 10000;window=86400" and the variant
 * without the leading bare number both give 100; the windows it lists say
 * which window that is (parse_limit_windows).  Returns whether the line
 * was a recognized, well-formed rate-limit header.
 */
bool
whoop_parse_rate_limit_header(const char *line, size_t len, WhoopRateLimit *rate)
{
	static const char prefix[] = "x-ratelimit-";
	const char *end = line + len;
	const char *name;
	const char *colon;
	int			value;

	if (len < sizeof(prefix) - 1 || pg_strncasecmp(line, prefix, sizeof(prefix) - 1) != 0)
		return false;
	name = line + sizeof(prefix) - 1;
	colon = memchr(name, ':', end - name);
	if (colon == NULL || !parse_leading_int(colon + 1, end, &value))
		return false;

	if (colon - name == 5 && pg_strncasecmp(name, "limit", 5) == 0)
	{
		rate->limit = value;
		parse_limit_windows(colon + 1, end, value, rate);
	}
	else if (colon - name == 9 && pg_strncasecmp(name, "remaining", 9) == 0)
		rate->remaining = value;
	else if (colon - name == 5 && pg_strncasecmp(name, "reset", 5) == 0)
		rate->reset_s = value;
	else
		return false;
	return true;
}

/*
 * whoop_body_excerpt returns the start of a response body, made printable,
 * for error details.
 */
char *
whoop_body_excerpt(const char *body, size_t len)
{
	size_t		n = Min(len, 200);
	char	   *excerpt = palloc(n + 4);
	size_t		i;

	for (i = 0; i < n; i++)
		excerpt[i] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : ' ';
	if (len > n)
		memcpy(excerpt + i, "...", 4);
	else
		excerpt[i] = '\0';
	return excerpt;
}

/*
 * whoop_body_looks_json says whether a response body begins, after
 * whitespace, the way a JSON object or array does.  A web page -- what a
 * wrong api_url or oauth_url, or a proxy in front of WHOOP, answers --
 * does not.
 */
bool
whoop_body_looks_json(const char *body, size_t len)
{
	size_t		i = 0;

	while (i < len && (body[i] == ' ' || body[i] == '\t' ||
					   body[i] == '\n' || body[i] == '\r'))
		i++;
	return i < len && (body[i] == '{' || body[i] == '[');
}

/*
 * parse_digits reads exactly N decimal digits.
 */
static inline bool
parse_digits(const char **p, const char *end, int n, int *out)
{
	int			value = 0;

	if (end - *p < n)
		return false;
	for (int i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		value = value * 10 + (c - '0');
	}
	*p += n;
	*out = value;
	return true;
}

/*
 * whoop_parse_timestamp parses WHOOP's ISO-8601 timestamps
 * (2026-06-29T22:13:05.123Z, also with an offset or without fraction) into
 * a timestamptz.  Returns false for anything else, so that the caller can
 * fall back to timestamptz_in.
 */
bool
whoop_parse_timestamp(const char *text, int len, TimestampTz *result)
{
	const char *p = text;
	const char *end = text + len;
	int			year,
				month,
				day,
				hour,
				minute,
				second;
	int64		fraction_us = 0;
	int			offset_s = 0;
	int64		days;

	if (!parse_digits(&p, end, 4, &year) || p >= end || *p++ != '-' ||
		!parse_digits(&p, end, 2, &month) || p >= end || *p++ != '-' ||
		!parse_digits(&p, end, 2, &day) || p >= end || (*p != 'T' && *p != 't') ||
		!(++p, parse_digits(&p, end, 2, &hour)) || p >= end || *p++ != ':' ||
		!parse_digits(&p, end, 2, &minute) || p >= end || *p++ != ':' ||
		!parse_digits(&p, end, 2, &second))
		return false;

	if (p < end && *p == '.')
	{
		int64		scale = 100000;

		p++;
		if (p >= end || *p < '0' || *p > '9')
			return false;
		while (p < end && *p >= '0' && *p <= '9')
		{
			fraction_us += (*p - '0') * scale;
			scale /= 10;
			p++;
		}
	}

	if (p < end && (*p == 'Z' || *p == 'z'))
		p++;
	else if (p < end && (*p == '+' || *p == '-'))
	{
		int			sign = (*p == '-') ? -1 : 1;
		int			oh,
					om = 0;

		p++;
		if (!parse_digits(&p, end, 2, &oh))
			return false;
		if (p < end && *p == ':')
			p++;
		if (p < end && !parse_digits(&p, end, 2, &om))
			return false;
		if (oh > 15 || om > 59)
			return false;
		offset_s = sign * (oh * 3600 + om * 60);
	}
	else
		return false;
	if (p != end)
		return false;

	if (month < 1 || month > 12 || day < 1 ||
		day > day_tab[isleap(year)][month - 1] ||
		hour > 23 || minute > 59 || second > 59)
		return false;

	days = date2j(year, month, day) - POSTGRES_EPOCH_JDATE;
	*result = days * USECS_PER_DAY +
		((int64) hour * 3600 + minute * 60 + second - offset_s) * USECS_PER_SEC +
		fraction_us;
	return true;
}
