/*-------------------------------------------------------------------------
 *
 * asan_gettext_shim.c
 *		  No-op gettext domain setup, preloaded after the ASan runtime by
 *		  test/check_asan.py.
 *
 * With the ASan runtime preloaded into Debian's (uninstrumented) postgres,
 * the process hangs before main() is done: libgpg-error's constructor (pulled
 * in through libgcrypt) calls bindtextdomain() before the runtime has
 * initialized, and glibc's gettext state lock is left held, so the next
 * bindtextdomain()/textdomain() -- PostgreSQL's own, in
 * set_pglocale_pgservice() -- waits forever.  A tiny program linked with
 * libgcrypt shows the same.  These three replacements keep glibc's gettext
 * setup, and with it the lock, out of the picture; messages simply stay
 * untranslated, which the clusters of the tests (C locale) never notice.
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>

char	   *textdomain(const char *domainname);
char	   *bindtextdomain(const char *domainname, const char *dirname);
char	   *bind_textdomain_codeset(const char *domainname, const char *codeset);

/*
 * textdomain returns the domain it is given, without setting it.
 */
char *
textdomain(const char *domainname)
{
	return (char *) (domainname ? domainname : "messages");
}

/*
 * bindtextdomain returns the directory it is given, without binding it.
 */
char *
bindtextdomain(const char *domainname, const char *dirname)
{
	return (char *) dirname;
}

/*
 * bind_textdomain_codeset returns the codeset it is given, without setting it.
 */
char *
bind_textdomain_codeset(const char *domainname, const char *codeset)
{
	return (char *) codeset;
}
