"""test_demo.py -- make demo's state belongs to its clone, and its output is
plain text unless it goes to a terminal.

Cheap on purpose (a few seconds, no cluster, no simulator): two copies of
test/demo/demo.py stand for two clones, a sleeping process for a demo's
simulator and an empty directory for its cluster.  `demo.py stop` in one
clone must leave the other clone's demo alone and end its own; a pid that
no longer has the recorded start time is not signalled.  The headings are
bold only on a terminal (a pseudo-terminal here), never in a pipe or under
NO_COLOR.
"""

import importlib.util
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

TEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_DIR = os.path.join(TEST_DIR, "demo")
ESC = b"\x1b"


def make_clone(root, name):
    """make_clone: a directory with test/demo/demo.py and test/lib/harness.py, like a clone
    of the repository; returns its test/."""
    test_dir = os.path.join(root, name, "test")
    for f in ("demo/demo.py", "lib/harness.py"):
        os.makedirs(os.path.join(test_dir, os.path.dirname(f)), exist_ok=True)
        shutil.copy(os.path.join(TEST_DIR, f), os.path.join(test_dir, f))
    return test_dir


def run_demo(test_dir, *args):
    """run_demo runs a clone's demo.py with its output in a pipe; returns (exit code, output bytes)."""
    proc = subprocess.run([sys.executable, os.path.join(test_dir, "demo", "demo.py")] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return proc.returncode, proc.stdout


class DemoState(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="whoop_demo_test.")
        self.a = make_clone(self.root, "clone_a")
        self.b = make_clone(self.root, "clone_b")
        # clone A's "simulator" and "cluster directory"
        self.sim = subprocess.Popen(["sleep", "300"], start_new_session=True)
        self.cluster_dir = tempfile.mkdtemp(prefix="cluster.", dir=self.root)
        spec = importlib.util.spec_from_file_location("demo_clone_a", os.path.join(self.a, "demo", "demo.py"))
        self.demo = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.demo)

    def tearDown(self):
        if self.sim.poll() is None:
            self.sim.kill()
        self.sim.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def write_state(self, test_dir, started):
        out = os.path.join(test_dir, "out")
        os.makedirs(out, exist_ok=True)
        state = os.path.join(out, "demo.json")
        with open(state, "w") as f:
            json.dump({"cluster_dir": self.cluster_dir, "cluster_data": os.path.join(self.cluster_dir, "data"),
                       "simulator_pid": self.sim.pid, "simulator_started": started, "port": 1}, f)
        return state

    def test_the_state_lives_in_the_clone(self):
        self.assertEqual(self.demo.STATE_FILE, os.path.join(self.a, "out", "demo.json"))

    def test_stop_ends_this_clones_demo_only(self):
        state_a = self.write_state(self.a, self.demo.process_start(self.sim.pid))
        code, out = run_demo(self.b, "stop")
        self.assertEqual((code, out), (0, b"no demo is running\n"))
        self.assertIsNone(self.sim.poll(), "clone B's demo-stop ended clone A's simulator")
        self.assertTrue(os.path.exists(state_a))
        self.assertTrue(os.path.isdir(self.cluster_dir))

        code, out = run_demo(self.a, "stop")
        self.assertEqual((code, out), (0, b"demo cluster and simulator stopped\n"))
        self.assertEqual(self.sim.wait(timeout=30), -signal.SIGTERM)
        self.assertFalse(os.path.exists(state_a))
        self.assertFalse(os.path.exists(self.cluster_dir))

    def test_a_reused_pid_is_not_signalled(self):
        state_a = self.write_state(self.a, self.demo.process_start(self.sim.pid) - 1)
        code, out = run_demo(self.a, "stop")
        self.assertEqual(code, 0, out)
        self.assertIsNone(self.sim.poll(), "a process that merely has the recorded pid was signalled")
        self.assertFalse(os.path.exists(state_a))


class Headings(unittest.TestCase):

    def test_bold_on_a_terminal(self):
        self.assertEqual(heading(tty=True), b"\n" + ESC + b"[1m== a heading" + ESC + b"[0m\n")

    def test_plain_in_a_pipe(self):
        self.assertEqual(heading(tty=False), b"\n== a heading\n")

    def test_plain_under_no_color(self):
        self.assertEqual(heading(tty=True, no_color="1"), b"\n== a heading\n")
        # no-color.org: an empty NO_COLOR is as good as none
        self.assertIn(ESC, heading(tty=True, no_color=""))


def heading(tty, no_color=None):
    """heading: what demo.say('a heading') writes to a pseudo-terminal or to a pipe,
    with NO_COLOR unset or set to NO_COLOR."""
    cmd = [sys.executable, "-c", "import demo; demo.say('a heading')"]
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    if no_color is not None:
        env["NO_COLOR"] = no_color
    if not tty:
        return subprocess.run(cmd, cwd=DEMO_DIR, env=env, stdout=subprocess.PIPE, check=True,
                              timeout=60).stdout
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, cwd=DEMO_DIR, env=env, stdout=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:         # EIO: the child has closed the terminal
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=60)
        return out.replace(b"\r\n", b"\n")     # the terminal's line discipline adds the CRs
    finally:
        os.close(master)


if __name__ == "__main__":
    unittest.main()
