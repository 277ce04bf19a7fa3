//! How a scenario reports: human lines, the command that reproduces it, and
//! one machine-readable `RESULT key=value ...` line (what compare.sh parses).

use crate::args::shell_quote;

pub struct Report {
    scenario: String,
    pairs: Vec<(String, String)>,
}

impl Report {
    pub fn new(scenario: &str, label: &str) -> Report {
        println!("== leanftpd-bench {scenario} ({label}) ==");
        let mut r = Report { scenario: scenario.to_string(), pairs: Vec::new() };
        r.kv("label", label);
        r
    }

    /// Record a figure; also printed for people.
    pub fn kv(&mut self, k: &str, v: impl std::fmt::Display) {
        let v = v.to_string().replace(char::is_whitespace, "_");
        println!("  {k:<28} {v}");
        self.pairs.push((k.to_string(), v));
    }

    /// A float with a sensible number of digits.
    pub fn f(&mut self, k: &str, v: f64) {
        self.kv(k, fmt_f(v));
    }

    pub fn note(&self, s: &str) {
        println!("  note: {s}");
    }

    pub fn finish(self) {
        let argv: Vec<String> = std::env::args().map(|a| shell_quote(&a)).collect();
        println!("  reproduce: {}", argv.join(" "));
        let mut line = format!("RESULT scenario={}", self.scenario);
        for (k, v) in &self.pairs {
            line.push_str(&format!(" {k}={v}"));
        }
        println!("{line}");
    }
}

pub fn fmt_f(v: f64) -> String {
    if !v.is_finite() {
        "nan".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}
