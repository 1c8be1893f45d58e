#!/usr/bin/env python3
"""make_corpus.py -- seed corpus and dictionaries for the fuzz targets, from the simulator.

Starts the WHOOP simulator (test/whoop_sim.py, fixed seed and clock) and
records what a client really receives:

  corpus/fuzz_page/    pages of every collection endpoint (small pages, with
                       and without next_token), single records by id,
                       profile, body measurement, and error bodies (400, 401,
                       404, 429, an HTML 503, a truncated page)
  corpus/fuzz_token/   token answers of a code exchange and of a refresh,
                       OAuth error bodies, an HTML 503
  corpus/fuzz_parse/   response header blocks (with the X-RateLimit-* lines,
                       also in WHOOP's variant forms), timestamps as WHOOP
                       writes them, an error page to excerpt
  dict/*.dict          libFuzzer dictionaries: JSON punctuation, every field
                       name of fdw/endpoint.c, WHOOP's enum values, header names

The data is deterministic (fixed seed and clock; tokens and the Date header
are not); run it again (make -C test/fuzz corpus) when
the simulator or the endpoints change.  Standard library only.
"""

import json
import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(HERE, "corpus", target, name), "wb") as f:
        f.write(data)


def header_block(status, headers):
    lines = ["HTTP/1.1 %d X" % status] + ["%s: %s" % kv for kv in headers.items()]
    return "".join(line + "\r\n" for line in lines) + "\r\n"


def endpoint_keys():
    """endpoint_keys: every segment of every field path in fdw/endpoint.c."""
    src = open(os.path.join(HERE, "..", "..", "fdw", "endpoint.c")).read()
    keys = set()
    for path in re.findall(r'JSON\("[^"]+", "([^"]+)"', src):
        keys.update(path.split("."))
    return sorted(keys)


def main():
    for target in ("fuzz_page", "fuzz_token", "fuzz_parse"):
        shutil.rmtree(os.path.join(HERE, "corpus", target), ignore_errors=True)
        os.makedirs(os.path.join(HERE, "corpus", target))
    os.makedirs(os.path.join(HERE, "dict"), exist_ok=True)

    with harness.Simulator("--athletes", "2", "--days", "30", "--quiet") as sim:
        token = sim.token(0)
        auth = {"Authorization": "Bearer " + token}

        def get(path):
            return sim.request("GET", "/developer" + path, headers=auth)

        # pages: the newest (ongoing, pending records, next_token), an older
        # last page (next_token absent or null), for every collection
        for name, path in (("cycle", "/v2/cycle"), ("recovery", "/v2/recovery"),
                           ("sleep", "/v2/activity/sleep"),
                           ("workout", "/v2/activity/workout")):
            status, _, body = get(path + "?limit=2")
            write("fuzz_page", name + "_page", body)
            first = json.loads(body)["records"]
            status, _, body = get(path + "?limit=3&end=2026-06-05T00:00:00.000Z"
                                  "&start=2026-06-04T00:00:00.000Z")
            write("fuzz_page", name + "_last_page", body)
            record = first[-1]
            if name == "recovery":
                status, _, body = get("/v2/cycle/%d/recovery" % record["cycle_id"])
            else:
                status, _, body = get("%s/%s" % (path, record["id"]))
            write("fuzz_page", name + "_by_id", body)
        with_steps = [r for r in sim.records("cycle") if "step_count" in r]
        if with_steps:
            write("fuzz_page", "cycle_unknown_field", json.dumps(with_steps[0]))
        write("fuzz_page", "profile", get("/v2/user/profile/basic")[2])
        write("fuzz_page", "body_measurement", get("/v2/user/measurement/body")[2])
        write("fuzz_page", "error_404", get("/v2/cycle/1")[2])
        write("fuzz_page", "error_400", get("/v2/cycle?limit=99")[2])
        write("fuzz_page", "error_401", sim.request("GET", "/developer/v2/cycle")[2])
        sim.fault(path="/v2/cycle", kind="status", status=503, count=1)
        html_503 = get("/v2/cycle?limit=2")[2]
        write("fuzz_page", "error_503_html", html_503)
        sim.fault(path="/v2/cycle", kind="status", status=429, count=1)
        write("fuzz_page", "error_429", get("/v2/cycle?limit=2")[2])
        sim.fault(path="/v2/cycle", kind="truncate", count=1)
        status, headers, body = get("/v2/cycle?limit=2")
        write("fuzz_page", "truncated_page", body)

        # token answers and OAuth errors
        accounts = sim.accounts()
        athlete = accounts["athletes"][0]
        client = {"client_id": accounts["client_id"],
                  "client_secret": accounts["client_secret"]}

        def token_request(form):
            return sim.request("POST", "/oauth/oauth2/token", form=form)

        status, token_headers, body = token_request(dict(
            client, grant_type="refresh_token", refresh_token=athlete["refresh_token"],
            scope="offline"))
        write("fuzz_token", "refresh_answer", body)
        write("fuzz_token", "code_answer", token_request(dict(
            client, grant_type="authorization_code", code=athlete["code"],
            redirect_uri=accounts["redirect_uri"]))[2])
        write("fuzz_token", "invalid_grant", token_request(dict(
            client, grant_type="refresh_token", refresh_token=athlete["refresh_token"]))[2])
        write("fuzz_token", "invalid_client", token_request(dict(
            client_id="nobody", client_secret="x", grant_type="refresh_token",
            refresh_token="x"))[2])
        write("fuzz_token", "unsupported_grant_type", token_request(dict(
            client, grant_type="password"))[2])
        write("fuzz_token", "error_503_html", html_503)

        # header blocks and timestamps
        status, headers, _ = get("/v2/activity/sleep?limit=1")
        write("fuzz_parse", "headers_page", header_block(status, headers))
        write("fuzz_parse", "headers_token", header_block(200, token_headers))
        write("fuzz_parse", "headers_variants",
              "x-ratelimit-limit: 100;window=60, 10000;window=86400\r\n"
              "X-RATELIMIT-REMAINING:\t0\r\nX-RateLimit-Reset: 59\r\n")
        record = sim.records("sleep")[0]
        for field in ("start", "end", "created_at"):
            write("fuzz_parse", "timestamp_" + field, record[field])
        write("fuzz_parse", "timestamp_offset", "2026-03-29T01:59:59.999+05:30")
        write("fuzz_parse", "error_page", html_503)

    punctuation = ['"{"', '"}"', '"["', '"]"', '":"', '","', '"\\""', '"null"',
                   '"true"', '"false"', '"-"', '"."', '"e+"', '"\\\\u0000"',
                   '"\\\\ud800"', '"\\xc3\\xa9"']
    words = ["records", "next_token"] + endpoint_keys() + [
        "SCORED", "PENDING_SCORE", "UNSCORABLE", "2026-06-29T22:13:05.123Z", "+05:30",
        "Z"]
    with open(os.path.join(HERE, "dict", "fuzz_page.dict"), "w") as f:
        f.write("# generated by make_corpus.py: JSON punctuation and WHOOP field names\n")
        f.write("\n".join(punctuation + ['"%s"' % w for w in words]) + "\n")
    with open(os.path.join(HERE, "dict", "fuzz_token.dict"), "w") as f:
        f.write("# generated by make_corpus.py: JSON punctuation and OAuth fields\n")
        f.write("\n".join(punctuation + ['"%s"' % w for w in (
            "access_token", "refresh_token", "expires_in", "scope", "token_type",
            "bearer", "error", "error_description", "invalid_grant", "offline")]) + "\n")
    with open(os.path.join(HERE, "dict", "fuzz_parse.dict"), "w") as f:
        f.write("# generated by make_corpus.py: header names and timestamp pieces\n")
        f.write("\n".join('"%s"' % w for w in (
            "X-RateLimit-Limit:", "X-RateLimit-Remaining:", "X-RateLimit-Reset:",
            ";window=", "\\x0d\\x0a", "HTTP/1.1 ", "T", "Z", ".", "+", "-", ":",
            "2147483647", "2147483648", "1970-01-01T00:00:00Z")) + "\n")
    total = 0
    for root, _, files in os.walk(os.path.join(HERE, "corpus")):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in files)
    print("corpus written: %d bytes" % total)


if __name__ == "__main__":
    main()
