"""test_package.py -- the Debian package and the release metadata.

Metadata (no root needed): META.json is a PGXN Meta Spec 1.0.0 document
whose versions agree with whoop_fdw.control and debian/changelog, LICENSE
and debian/copyright carry the same PostgreSQL License, and debian/control
is what pg_buildext generates from debian/control.in.

Package (root only, as dpkg -i is): dpkg-buildpackage -us -uc -b in a copy
of the tree (the work tree stays clean; the build itself runs make
installcheck against the built package in a throwaway cluster), the .deb's
fields and files, then the .deb installed into the system with dpkg: a
clean cluster that loads the extension from the system installation (no
extension_destdir), CREATE EXTENSION, a simulator athlete linked and
CALL whoop.run_pipeline() with rows, the package's autopkgtest (make
installcheck against the installed package), and dpkg -r at the end.
Files of a `make install` that the package would overwrite are put back.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness
from harness import psql, rows, scalar

ROOT = harness.ROOT
SOURCE = "whoop-fdw"
DB = "pkg_installed"

# PGXN Meta Spec 1.0.0: the keys a distribution may have, the Term and
# SemVer grammars, and the license shortcuts.
META_KEYS = {"name", "version", "abstract", "maintainer", "license", "provides", "meta-spec",
             "description", "generated_by", "tags", "no_index", "prereqs", "release_status",
             "resources"}
META_REQUIRED = {"name", "version", "abstract", "maintainer", "license", "provides", "meta-spec"}
TERM = re.compile(r"^[^/\\\s\x00-\x1f\x7f]{2,}$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")
VERSION_RANGE = re.compile(r"^((==|!=|[<>]=?)\s*)?(%s)(,\s*((==|!=|[<>]=?)\s*)?(%s))*$"
                           % (SEMVER.pattern[1:-1], SEMVER.pattern[1:-1]))
LICENSES = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd",
            "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
            "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay",
            "sun", "zlib", "open_source", "restricted", "unrestricted", "unknown"}


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def control_version():
    """control_version is whoop_fdw.control's default_version."""
    return re.search(r"^default_version\s*=\s*'([^']+)'", read("whoop_fdw.control"), re.M).group(1)


def changelog_version():
    """changelog_version is the version of debian/changelog's newest entry."""
    return re.match(r"^\S+ \(([^)]+)\)", read("debian/changelog")).group(1)


def as_semver(version):
    """as_semver pads an extension version to the three parts SemVer wants (1.1 -> 1.1.0)."""
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def run(cmd, cwd, timeout=900, env=None):
    """run runs CMD in CWD and returns the completed process; callers check its exit status."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def build_env():
    """build_env is the environment without the runner's cluster and staging
    directory, so the package build and its tests pick their own."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WHOOP_"))}


def restore_environment(saved):
    """restore_environment makes os.environ what SAVED holds again."""
    os.environ.clear()
    os.environ.update(saved)


class Metadata(unittest.TestCase):
    """META.json, LICENSE, debian/copyright and debian/control."""

    @classmethod
    def setUpClass(cls):
        cls.meta = json.loads(read("META.json"))

    def test_meta_json_follows_pgxn_meta_spec_1_0_0(self):
        meta = self.meta
        self.assertEqual(META_REQUIRED - set(meta), set())
        self.assertEqual({k for k in meta if not k.lower().startswith("x_")} - META_KEYS, set())
        self.assertEqual(meta["meta-spec"]["version"], "1.0.0")
        self.assertRegex(meta["name"], TERM)
        self.assertRegex(meta["version"], SEMVER)
        self.assertTrue(meta["abstract"].strip())
        self.assertTrue(meta["maintainer"])
        self.assertIn(meta["license"], LICENSES)
        self.assertTrue(meta["provides"])
        for name, ext in meta["provides"].items():
            self.assertRegex(name, TERM)
            self.assertEqual({"file", "version"} - set(ext), set(), name)
            self.assertRegex(ext["version"], SEMVER)
            self.assertTrue(os.path.isfile(os.path.join(ROOT, ext["file"])), ext["file"])
            if "docfile" in ext:
                self.assertTrue(os.path.isfile(os.path.join(ROOT, ext["docfile"])), ext["docfile"])
        for phase, relations in meta.get("prereqs", {}).items():
            self.assertIn(phase, ("configure", "build", "test", "runtime", "develop"))
            for relation, prereqs in relations.items():
                self.assertIn(relation, ("requires", "recommends", "suggests", "conflicts"))
                for name, version in prereqs.items():
                    self.assertRegex(name, TERM)
                    if version != 0:
                        self.assertRegex(version, VERSION_RANGE)
        for kind, paths in meta.get("no_index", {}).items():
            self.assertIn(kind, ("file", "directory"))
            for path in paths if isinstance(paths, list) else [paths]:
                self.assertTrue(os.path.exists(os.path.join(ROOT, path)), path)

    def test_meta_json_names_the_extension_license_and_postgresql_15(self):
        self.assertEqual(self.meta["name"], "whoop_fdw")
        self.assertEqual(list(self.meta["provides"]), ["whoop_fdw"])
        self.assertEqual(self.meta["license"], "postgresql")
        self.assertEqual(self.meta["prereqs"]["runtime"]["requires"]["PostgreSQL"], "15.0.0")

    def test_versions_agree(self):
        version = as_semver(control_version())
        self.assertEqual(self.meta["version"], version)
        self.assertEqual(self.meta["provides"]["whoop_fdw"]["version"], version)
        upstream = changelog_version().rsplit("-", 1)[0]
        self.assertEqual(as_semver(upstream), version)

    def test_license_and_debian_copyright_carry_the_same_postgresql_license(self):
        license_text = read("LICENSE")
        self.assertTrue(license_text.startswith("PostgreSQL License\n"))
        self.assertIn("Copyright (c) ", license_text)
        self.assertIn("whoop_fdw developers", license_text)
        copyright_text = read("debian/copyright")
        self.assertIn("\nLicense: PostgreSQL\n", copyright_text)
        body = copyright_text.split("\nLicense: PostgreSQL\n")[-1]
        paragraphs = [p.replace("\n", " ") for p in
                      "\n".join("" if line == " ." else line[1:]
                                for line in body.rstrip("\n").split("\n")).split("\n\n")]
        license_paragraphs = [p.replace("\n", " ")
                              for p in license_text.rstrip("\n").split("\n\n")[2:]]
        self.assertEqual(paragraphs, license_paragraphs)

    def test_debian_control_is_generated_from_control_in(self):
        # For the versions debian/control was generated for (those Debian 12
        # supports), whatever this host supports.  pg_buildext checkcontrol
        # is what the package build runs; it works on a copy, as it writes a
        # temporary file beside debian/control.
        versions = re.findall(r"^Package: postgresql-(\d+)-whoop-fdw$", read("debian/control"), re.M)
        self.assertNotEqual(versions, [])
        env = dict(os.environ, PG_SUPPORTED_VERSIONS=" ".join(versions))
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(os.path.join(ROOT, "debian"), os.path.join(tmp, "debian"))
            proc = run(["pg_buildext", "checkcontrol"], cwd=tmp, timeout=60, env=env)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)


@unittest.skipUnless(os.geteuid() == 0, "installing a .deb into the system needs root")
class Package(unittest.TestCase):
    """dpkg-buildpackage, the .deb, and the .deb installed into the system."""

    @classmethod
    def setUpClass(cls):
        pg_config = os.path.join(harness.PG_BINDIR, "pg_config")
        cls.major = re.search(r"(\d+)", subprocess.run([pg_config, "--version"], check=True,
                                                       capture_output=True, text=True).stdout).group(1)
        cls.package = "postgresql-%s-whoop-fdw" % cls.major
        state = run(["dpkg-query", "-W", "-f", "${db:Status-Status}", cls.package], cwd="/", timeout=60)
        if state.stdout == "installed":
            raise RuntimeError("%s is installed already; this test installs and removes its own "
                               "build: dpkg -r %s first" % (cls.package, cls.package))
        cls.tmp = tempfile.mkdtemp(prefix="whoop_package.")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        # the build's own installcheck runs the server as postgres, which
        # reads the built package from the copy
        os.chmod(cls.tmp, 0o755)
        cls.deb = cls.build()
        cls.install()

    @classmethod
    def build(cls):
        """build copies the tree (what git tracks or would track) and builds the binary packages."""
        src = os.path.join(cls.tmp, "%s-%s" % (SOURCE, changelog_version().rsplit("-", 1)[0]))
        files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                    cwd=ROOT, timeout=60)
        if files.returncode != 0:
            raise RuntimeError("git ls-files failed: " + files.stderr)
        for name in filter(None, files.stdout.split("\0")):
            path = os.path.join(ROOT, name)
            if os.path.isfile(path):
                os.makedirs(os.path.dirname(os.path.join(src, name)), exist_ok=True)
                shutil.copy2(path, os.path.join(src, name))
        # debian/control lists the packages of Debian 12's PostgreSQL; on a
        # host that supports other versions the build regenerates it (in the
        # copy), as builds for apt.postgresql.org do.
        proc = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src,
                   env=dict(build_env(), PG_UPDATECONTROL="yes"))
        cls.build_log = proc.stdout + proc.stderr
        with open(os.path.join(cls.tmp, "build.log"), "w") as f:
            f.write(cls.build_log)
        if proc.returncode != 0:
            raise RuntimeError("dpkg-buildpackage failed (exit %d):\n%s"
                               % (proc.returncode, cls.build_log[-6000:]))
        cls.src = src
        arch = run(["dpkg", "--print-architecture"], cwd="/", timeout=60).stdout.strip()
        deb = os.path.join(cls.tmp, "%s_%s_%s.deb" % (cls.package, changelog_version(), arch))
        if not os.path.exists(deb):
            raise RuntimeError("no %s; the build made: %s" % (deb, os.listdir(cls.tmp)))
        return deb

    @classmethod
    def install(cls):
        """install moves aside files of a `make install` that the package
        would overwrite, installs the .deb, and registers its removal."""
        listing = run(["dpkg-deb", "-c", cls.deb], cwd="/", timeout=60).stdout
        cls.files = [line.split(None, 5)[5][1:] for line in listing.splitlines()
                     if line.startswith("-")]
        saved = os.path.join(cls.tmp, "saved")
        for path in cls.files:
            owned = run(["dpkg", "-S", path], cwd="/", timeout=60).returncode == 0
            if os.path.exists(path) and not owned:
                os.makedirs(os.path.dirname(saved + path), exist_ok=True)
                shutil.move(path, saved + path)
                cls.addClassCleanup(shutil.move, saved + path, path)
        cls.addClassCleanup(run, ["dpkg", "-r", cls.package], "/", 600)
        proc = run(["dpkg", "-i", cls.deb], cwd="/", timeout=600)
        if proc.returncode != 0:
            raise RuntimeError("dpkg -i failed:\n" + proc.stdout + proc.stderr)

    def test_build_ran_installcheck_against_the_package(self):
        self.assertIn("### End %s installcheck ###" % self.major, self.build_log)
        self.assertRegex(self.build_log, r"All \d+ tests passed")
        self.assertFalse(os.path.exists(os.path.join(ROOT, "build-%s" % self.major)))

    def test_deb_fields(self):
        fields = run(["dpkg-deb", "-f", self.deb, "Package", "Version", "Depends", "Section"],
                     cwd="/", timeout=60).stdout
        self.assertIn("Package: %s\n" % self.package, fields)
        self.assertIn("Version: %s\n" % changelog_version(), fields)
        self.assertIn("Section: database\n", fields)
        depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
        self.assertRegex(depends, r"(^|, )postgresql-%s( |,|$)" % self.major)
        self.assertRegex(depends, r"libcurl4")
        self.assertRegex(depends, r"libjson-c\d")

    def test_deb_holds_the_module_the_control_file_and_every_sql_script(self):
        share = "/usr/share/postgresql/%s/extension/" % self.major
        sql = sorted(os.path.basename(f) for f in self.files if f.startswith(share) and f.endswith(".sql"))
        upgrades = sorted(name for d in (ROOT, os.path.join(ROOT, "extension"))
                          for name in os.listdir(d) if re.match(r"^whoop_fdw--.+--.+\.sql$", name))
        self.assertEqual(sql, sorted(["whoop_fdw--%s.sql" % control_version()] + upgrades))
        self.assertIn("/usr/lib/postgresql/%s/lib/whoop_fdw.so" % self.major, self.files)
        self.assertIn(share + "whoop_fdw.control", self.files)
        self.assertIn("/usr/share/doc/%s/copyright" % self.package, self.files)

    def test_deb_holds_the_webhook_receiver_and_its_examples(self):
        self.assertIn("/usr/lib/postgresql/%s/bin/whoop-webhookd" % self.major, self.files)
        examples = "/usr/share/doc/%s/examples/" % self.package
        self.assertIn(examples + "whoop-webhookd.conf.example", self.files)
        self.assertIn(examples + "whoop-webhookd.service", self.files)
        with open(examples + "whoop-webhookd.service") as f:
            self.assertIn("ExecStart=/usr/lib/postgresql/%s/bin/whoop-webhookd " % self.major,
                          f.read())
        depends = run(["dpkg-deb", "-f", self.deb, "Depends"], cwd="/", timeout=60).stdout
        self.assertRegex(depends, r"libmicrohttpd\d+")
        self.assertRegex(depends, r"libpq5")

    def test_installed_package_runs_the_pipeline_in_a_clean_cluster(self):
        cluster = harness.Cluster(settings={"extension_destdir": "''"}).init().start()
        self.addCleanup(cluster.destroy)
        # harness.psql() and friends talk to the cluster in os.environ
        self.addCleanup(restore_environment, dict(os.environ))
        os.environ.update(cluster.env())
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        sim = harness.Simulator("--athletes", "1", "--days", "60", "--now", now,
                                "--rate-per-minute", "0", "--rate-per-day", "0").start()
        self.addCleanup(sim.stop)

        harness.fresh_database(DB)
        self.assertEqual(scalar("select current_setting('extension_destdir') = ''"), "t")
        self.assertEqual(scalar("select extversion from pg_extension where extname = 'whoop_fdw'"),
                         control_version())
        maps = psql("select count(*) from whoop.fetch_stats(); select pg_read_file('/proc/self/maps')")
        self.assertIn("/usr/lib/postgresql/%s/lib/whoop_fdw.so" % self.major, maps)

        users = harness.link_simulator(sim, import_into=None)
        self.assertEqual(len(users), 1)
        psql("call whoop.run_pipeline()")
        steps = dict((r[0], r[1:]) for r in rows(
            "select step, status, row_count, coalesce(error, '') from whoop.run_log "
            "where run_id = (select max(run_id) from whoop.run_log)"))
        self.assertEqual(steps["sync"][0], "ok", steps)
        self.assertGreater(int(steps["sync"][1]), 0)
        self.assertEqual(steps["refresh"][0], "ok", steps)
        self.assertEqual(steps["pipeline"][0], "ok", steps)
        self.assertGreater(int(scalar("select count(*) from whoop.fact_daily_recovery "
                                      "where user_id = %d" % users[0])), 0)
        self.assertGreater(int(scalar("select count(*) from whoop.recovery_momentum")), 0)

    def test_autopkgtest_installcheck_passes_against_the_installed_package(self):
        proc = run([os.path.join(self.src, "debian", "tests", "installcheck")], cwd=self.src,
                   env=build_env())
        out = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, out[-6000:])
        self.assertRegex(out, r"All \d+ tests passed")


if __name__ == "__main__":
    unittest.main()
