//! The real `fedgate` binary run as an admin runs it, in a temporary directory of its own with
//! an SQLite store there: [`Env`] runs commands, [`Run`] is what one printed and returned. Shared
//! by the CLI test files (each uses a part of it).
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub struct Env {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("fedgate.db")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fedgate"));
        c.current_dir(self.dir.path())
            .env_remove("FEDGATE_STORE")
            .env_remove("FEDGATE_CONFIG")
            .env("USER", "tester");
        c
    }

    /// Run with argv, store from the working directory (the default `sqlite:fedgate.db`).
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().unwrap())
    }

    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    pub fn partners(&self) -> Value {
        self.run(&["--output", "json", "Get-CsXmppAllowedPartner"])
            .ok()
            .json()
    }

    pub fn partner(&self, identity: &str) -> Value {
        let list = self
            .run(&[
                "--output",
                "json",
                "Get-CsXmppAllowedPartner",
                "-Identity",
                identity,
            ])
            .ok()
            .json();
        list[0].clone()
    }

    pub fn audit_len(&self) -> usize {
        self.run(&["--output", "json", "audit", "--limit", "100000"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len()
    }

    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.dir.path().join(name), bytes).unwrap();
    }
}
