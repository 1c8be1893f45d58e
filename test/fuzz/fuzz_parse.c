/*-------------------------------------------------------------------------
 *
 * fuzz_parse.c
 *		  Fuzz target: the small parsers of parse.c -- rate-limit header
 *		  lines, ISO-8601 timestamps and body excerpts.
 *
 * The input is used three ways: split at newlines into header lines as
 * libcurl hands them to http.c's header callback (each line in a buffer of
 * its exact size, so that reading past its end is caught); whole, as the
 * text of a timestamp; and whole, as a response body to excerpt for an
 * error message.  None of these may raise an error.
 *
 * Oracles:
 *	- a header line is accepted exactly when a separate, simpler reading
 *	  (the name, a colon, blanks, digits that fit an int) accepts it, with
 *	  the same field and value, and a rejected line changes nothing; only
 *	  a Limit line lists windows, and then the shortest is positive, the
 *	  longest no shorter, and the window described one of them or unknown;
 *	- an accepted timestamp equals what timegm(3) computes from the same
 *	  fields (a check of the date arithmetic, which uses date2j);
 *	- an excerpt is printable ASCII, at most 200 bytes plus "...".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>
#include <time.h>

#include "whoop_fdw.h"

#include "fuzz.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * reference_rate_header reads a rate-limit header line the plain way;
 * returns which field (0 limit, 1 remaining, 2 reset) or -1.
 */
static int
reference_rate_header(const char *line, size_t len, int *value)
{
	static const char *const names[] = {"x-ratelimit-limit", "x-ratelimit-remaining",
	"x-ratelimit-reset"};
	const char *colon = memchr(line, ':', len);
	size_t		i;
	long long	v = 0;
	int			digits = 0;

	if (colon == NULL)
		return -1;
	for (int n = 0; n < 3; n++)
	{
		if ((size_t) (colon - line) != strlen(names[n]) ||
			strncasecmp(line, names[n], colon - line) != 0)
			continue;
		i = colon - line + 1;
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		for (; i < len && line[i] >= '0' && line[i] <= '9'; i++, digits++)
		{
			v = v * 10 + (line[i] - '0');
			if (v > INT_MAX)
				return -1;
		}
		if (digits == 0)
			return -1;
		*value = (int) v;
		return n;
	}
	return -1;
}

/*
 * check_header_lines feeds each line of the input to the header parser.
 */
static void
check_header_lines(const uint8_t *data, size_t size)
{
	size_t		start = 0;

	while (start < size)
	{
		const uint8_t *newline = memchr(data + start, '\n', size - start);
		size_t		len = newline ? (size_t) (newline - (data + start)) + 1 : size - start;
		char	   *line = malloc(len ? len : 1);
		WhoopRateLimit rate = {-7, -7, -7, {-1, -1}, -1};
		int			expected_value = 0;
		int			expected;
		bool		accepted;

		memcpy(line, data + start, len);
		expected = reference_rate_header(line, len, &expected_value);
		accepted = whoop_parse_rate_limit_header(line, len, &rate);
		FUZZ_CHECK(accepted == (expected >= 0), "header line \"%.*s\": parser %s, reference %s",
				   (int) len, line, accepted ? "accepts" : "rejects",
				   expected >= 0 ? "accepts" : "rejects");
		FUZZ_CHECK(rate.limit == (expected == 0 ? expected_value : -7) &&
				   rate.remaining == (expected == 1 ? expected_value : -7) &&
				   rate.reset_s == (expected == 2 ? expected_value : -7),
				   "header line \"%.*s\" gave limit %d remaining %d reset %d",
				   (int) len, line, rate.limit, rate.remaining, rate.reset_s);
		FUZZ_CHECK(rate.window_s[0] == -1 ? rate.window_s[1] == -1 && rate.described == -1
				   : expected == 0 && rate.window_s[0] > 0 &&
				   rate.window_s[1] >= rate.window_s[0] && rate.window_s[1] < 1e9 &&
				   rate.described >= -1 && rate.described <= 1,
				   "header line \"%.*s\" gave windows %g and %g, described %d",
				   (int) len, line, rate.window_s[0], rate.window_s[1], rate.described);
		free(line);
		start += len;
	}
}

/*
 * reference_timestamp computes the timestamptz of an ISO-8601 text with
 * timegm(3); false when the text is not of WHOOP's form or the date is not
 * a real one.
 */
static bool
reference_timestamp(const char *text, size_t len, TimestampTz *result)
{
	static const int digit_at[] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18};
	struct tm	tm = {0};
	int			f[14];
	size_t		i = 19;
	int64		fraction_us = 0;
	int			offset_s = 0;
	time_t		t;

	if (len < 20 || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != 't') ||
		text[13] != ':' || text[16] != ':')
		return false;
	for (int k = 0; k < 14; k++)
	{
		if (!isdigit((unsigned char) text[digit_at[k]]))
			return false;
		f[k] = text[digit_at[k]] - '0';
	}
	if (text[i] == '.')
	{
		int			ndigits = 0;

		for (i++; i < len && isdigit((unsigned char) text[i]); i++, ndigits++)
		{
			if (ndigits < 6)
				fraction_us = fraction_us * 10 + (text[i] - '0');
		}
		if (ndigits == 0)
			return false;
		for (; ndigits < 6; ndigits++)
			fraction_us *= 10;
	}
	if (i < len && (text[i] == 'Z' || text[i] == 'z'))
		i++;
	else if (i + 3 <= len && (text[i] == '+' || text[i] == '-') &&
			 isdigit((unsigned char) text[i + 1]) && isdigit((unsigned char) text[i + 2]))
	{
		int			sign = text[i] == '-' ? -1 : 1;
		int			hours = (text[i + 1] - '0') * 10 + (text[i + 2] - '0');
		int			minutes = 0;

		i += 3;
		if (i < len && text[i] == ':')
			i++;
		if (i + 2 <= len && isdigit((unsigned char) text[i]) && isdigit((unsigned char) text[i + 1]))
		{
			minutes = (text[i] - '0') * 10 + (text[i + 1] - '0');
			i += 2;
		}
		offset_s = sign * (hours * 3600 + minutes * 60);
	}
	else
		return false;
	if (i != len)
		return false;

	tm.tm_year = f[0] * 1000 + f[1] * 100 + f[2] * 10 + f[3] - 1900;
	tm.tm_mon = f[4] * 10 + f[5] - 1;
	tm.tm_mday = f[6] * 10 + f[7];
	tm.tm_hour = f[8] * 10 + f[9];
	tm.tm_min = f[10] * 10 + f[11];
	tm.tm_sec = f[12] * 10 + f[13];
	{
		struct tm	normalized = tm;

		t = timegm(&normalized);
		if (normalized.tm_year != tm.tm_year || normalized.tm_mon != tm.tm_mon ||
			normalized.tm_mday != tm.tm_mday || normalized.tm_hour != tm.tm_hour ||
			normalized.tm_min != tm.tm_min || normalized.tm_sec != tm.tm_sec)
			return false;
	}
	/* Unix epoch to PostgreSQL's (2000-01-01) */
	*result = ((int64) t - offset_s - INT64CONST(946684800)) * USECS_PER_SEC + fraction_us;
	return true;
}

/*
 * check_timestamp parses the whole input as a timestamp.
 */
static void
check_timestamp(const uint8_t *data, size_t size)
{
	TimestampTz ts;
	TimestampTz expected;

	if (size > PG_INT32_MAX)
		return;
	if (!whoop_parse_timestamp((const char *) data, (int) size, &ts))
		return;
	FUZZ_CHECK(IS_VALID_TIMESTAMP(ts), "timestamp \"%.*s\" out of range", (int) size, data);
	FUZZ_CHECK(reference_timestamp((const char *) data, size, &expected),
			   "timestamp \"%.*s\" accepted, but the reference rejects it", (int) size, data);
	FUZZ_CHECK(ts == expected, "timestamp \"%.*s\" parsed as " INT64_FORMAT ", reference " INT64_FORMAT,
			   (int) size, data, ts, expected);
}

/*
 * check_excerpt makes an error-message excerpt of the input.
 */
static void
check_excerpt(const uint8_t *data, size_t size)
{
	char	   *excerpt = whoop_body_excerpt((const char *) data, size);
	size_t		len = strlen(excerpt);

	FUZZ_CHECK(len == Min(size, 200) + (size > 200 ? 3 : 0), "excerpt of %zu bytes has %zu",
			   size, len);
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK(excerpt[i] >= 0x20 && excerpt[i] < 0x7f, "excerpt byte %zu is 0x%02x", i,
				   (unsigned char) excerpt[i]);
	pfree(excerpt);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext input = fuzz_begin();

	check_header_lines(data, size);
	check_timestamp(data, size);
	check_excerpt(data, size);
	fuzz_end(input);
	return 0;
}
