"""`fedgate init` asked on a real terminal: the binary runs on a pseudo-terminal (the standard
library's pty module), sees a terminal on stdin, shows each question with its default in
brackets, asks again after a bad answer, and writes a configuration `fedgate config check`
accepts.

Run: python3 -m pytest tests/cli -q (scripts/test.sh does, after building the binary), or
python3 -m unittest discover tests/cli. The binary: $FEDGATE_BIN, else target/debug/fedgate.
"""

import os
import pty
import select
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("FEDGATE_BIN", ROOT / "target" / "debug" / "fedgate"))


class Terminal:
    """`fedgate <args>` on the slave side of a new pseudo-terminal, in `cwd`."""

    def __init__(self, args, cwd):
        env = {k: v for k, v in os.environ.items() if k not in ("FEDGATE_STORE", "FEDGATE_CONFIG")}
        pid, fd = pty.fork()
        if pid == 0:  # the child: stdin, stdout and stderr are the terminal
            try:
                os.chdir(cwd)
                os.execve(str(BIN), [str(BIN), *args], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.screen = b""
        self.seen = 0

    def read_some(self, deadline):
        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            raise EOFError
        self.screen += chunk
        return True

    def expect(self, text, timeout=30):
        """Wait until `text` appears after what was already matched; the screen since then."""
        deadline = time.monotonic() + timeout
        want = text.encode()
        while want not in self.screen[self.seen:]:
            try:
                if not self.read_some(deadline) and time.monotonic() >= deadline:
                    raise AssertionError(f"{text!r} not shown; the screen:\n{self.text()}")
            except EOFError:
                raise AssertionError(f"exited before {text!r}; the screen:\n{self.text()}")
        start = self.seen
        self.seen = self.screen.index(want, self.seen) + len(want)
        return self.screen[start:self.seen].decode(errors="replace")

    def answer(self, prompt, line):
        shown = self.expect(prompt)
        os.write(self.fd, line.encode() + b"\r")
        return shown

    def finish(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.read_some(deadline)
            except EOFError:
                break
            if time.monotonic() >= deadline:
                os.kill(self.pid, 9)
                raise AssertionError(f"did not finish; the screen:\n{self.text()}")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def text(self):
        return self.screen.decode(errors="replace")


class InitOnATerminal(unittest.TestCase):
    def setUp(self):
        self.assertTrue(BIN.is_file(), f"{BIN} is missing: cargo build -p fedgate (or set FEDGATE_BIN)")
        self.dir = tempfile.TemporaryDirectory()
        self.cwd = Path(self.dir.name)
        # Certificate files of the admin's own (init checks only that they exist; the loader
        # reads them when the gateway starts).
        self.own_cert = self.cwd / "own" / "b.example.pem"
        self.own_key = self.cwd / "own" / "b.example.key"
        self.own_cert.parent.mkdir()
        self.own_cert.write_text("-----BEGIN CERTIFICATE-----\n")
        self.own_key.write_text("-----BEGIN PRIVATE KEY-----\n")

    def tearDown(self):
        self.dir.cleanup()

    def test_questions_with_defaults_a_bad_answer_asked_again_and_a_checked_config(self):
        t = Terminal(["init", "--no-dns-check"], self.cwd)
        t.answer("Hosted domain (your users' XMPP domain) [corp.example]: ", "")
        t.answer("Internal XMPP server for corp.example (host:port) [127.0.0.1:5269]: ", "10.0.0.5")
        t.answer("Certificate for corp.example: PEM chain file, or empty to generate a self-signed one []: ", "")
        t.answer("Another hosted domain (empty to finish) []: ", "b.example")
        t.answer("Internal XMPP server for b.example (host:port) [127.0.0.1:5269]: ", "10.0.0.6:99999")
        # A bad answer: the reason, and the same question again.
        shown = t.answer("Internal XMPP server for b.example (host:port) [127.0.0.1:5269]: ", "10.0.0.6:5270")
        self.assertIn("the port must be 1 to 65535", shown)
        # Certificate files of one's own for the second domain.
        t.answer("Certificate for b.example: PEM chain file, or empty to generate a self-signed one []: ",
                 str(self.cwd / "missing.pem"))
        shown = t.answer("Certificate for b.example: PEM chain file, or empty to generate a self-signed one []: ",
                         str(self.own_cert))
        self.assertIn("does not exist or is not a file", shown)
        t.answer("Private key file for b.example []: ", str(self.own_key))
        t.answer("Another hosted domain (empty to finish) []: ", "")
        t.answer("External listener: where partners connect (IP:port) [0.0.0.0:5269]: ", "")
        t.answer("(IP:port) [127.0.0.1:5270]: ", "")
        t.answer("Public host name partners connect to (the SRV target) [corp.example]: ", "xmpp.corp.example")
        t.answer("Configuration file to write [fedgate.toml]: ", "")
        t.answer("Store (sqlite:<path>, relative to the configuration file, or postgres://…) [sqlite:fedgate.db]: ", "")
        code = t.finish()
        screen = t.text()
        self.assertEqual(code, 0, screen)
        self.assertIn("_xmpp-server._tcp.corp.example. 3600 IN SRV 0 5 5269 xmpp.corp.example.", screen)
        self.assertIn("_xmpp-server._tcp.b.example. 3600 IN SRV 0 5 5269 xmpp.corp.example.", screen)
        self.assertIn("fedgate serve --config fedgate.toml", screen)
        text = (self.cwd / "fedgate.toml").read_text()
        self.assertIn('internal_server = "10.0.0.5:5269"', text)
        self.assertIn('internal_server = "10.0.0.6:5270"', text)
        self.assertIn('listen = "0.0.0.0:5269"', text)
        self.assertIn(f'certificate = "{self.own_cert}"', text)
        self.assertFalse((self.cwd / "b.example.pem").exists(), "generated though files were given")
        for name in ["fedgate.db", "corp.example.pem", "corp.example.key"]:
            self.assertTrue((self.cwd / name).is_file(), f"{name} missing; the screen:\n{screen}")
        check = subprocess.run([str(BIN), "config", "check", "fedgate.toml"], cwd=self.cwd,
                               capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stderr)

    def test_an_existing_file_is_kept_when_the_answer_is_no(self):
        (self.cwd / "fedgate.toml").write_text("# mine\n")
        t = Terminal(["init", "--no-dns-check", "--domain", "corp.example",
                      "--internal-server", "10.0.0.5:5269"], self.cwd)
        # The flags are the defaults: Enter takes them.
        t.answer("Hosted domain (your users' XMPP domain) [corp.example]: ", "")
        t.answer("Internal XMPP server for corp.example (host:port) [10.0.0.5:5269]: ", "")
        t.answer("or empty to generate a self-signed one []: ", "")
        t.answer("Another hosted domain (empty to finish) []: ", "")
        t.answer("[0.0.0.0:5269]: ", "")
        t.answer("[127.0.0.1:5270]: ", "")
        t.answer("[corp.example]: ", "")
        t.answer("Configuration file to write [fedgate.toml]: ", "")
        t.answer("[sqlite:fedgate.db]: ", "")
        t.answer("fedgate.toml exists. Overwrite it? (y/n) [n]: ", "maybe")
        shown = t.answer("fedgate.toml exists. Overwrite it? (y/n) [n]: ", "n")
        self.assertIn("allowed values: y, n", shown)
        code = t.finish()
        self.assertEqual(code, 1, t.text())
        self.assertIn("--force", t.text())
        self.assertEqual((self.cwd / "fedgate.toml").read_text(), "# mine\n")
        self.assertFalse((self.cwd / "fedgate.db").exists())


if __name__ == "__main__":
    unittest.main()
