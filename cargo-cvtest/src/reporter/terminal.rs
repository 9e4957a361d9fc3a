//! The human reporter, on stderr: a line per finished test, the output of failing tests, a
//! progress line on a terminal, and the final summary with its tables.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::events::{BinaryFinished, Event, PeakScope, RunStats, Status, TestFinished, Verdict};
use crate::policy::{StatusLevel, StatusLevels};
use crate::reporter::format::{human_bytes, secs, Painter};
use crate::reporter::summary::{Row, RunSummary};
use crate::reporter::Reporter;

pub(crate) struct TerminalReporter<W: Write> {
    out: W,
    paint: Painter,
    progress: bool,
    progress_shown: bool,
    started: Instant,
    total: usize,
    done: usize,
    running: usize,
    last_started: String,
    summary: RunSummary,
    levels: StatusLevels,
    /// Tests to list at the end (within the final status level): level, label, binary, name.
    finals: Vec<(StatusLevel, String, String, String)>,
}

impl TerminalReporter<io::LineWriter<io::Stderr>> {
    /// Writes to stderr a line at a time (stderr itself is unbuffered: each piece of a line
    /// would be a `write(2)` of its own, about 20 a test), and the progress line when flushed.
    pub(crate) fn stderr(paint: Painter, top: usize) -> Self {
        let progress = io::stderr().is_terminal();
        TerminalReporter::new(io::LineWriter::new(io::stderr()), paint, progress, top)
    }
}

impl<W: Write> TerminalReporter<W> {
    pub(crate) fn new(out: W, paint: Painter, progress: bool, top: usize) -> Self {
        TerminalReporter {
            out,
            paint,
            progress,
            progress_shown: false,
            started: Instant::now(),
            total: 0,
            done: 0,
            running: 0,
            last_started: String::new(),
            summary: RunSummary::new(top),
            levels: StatusLevels::default(),
            finals: Vec::new(),
        }
    }

    /// Shows only what `levels` let through, live and at the end.
    pub(crate) fn with_levels(mut self, levels: StatusLevels) -> Self {
        self.levels = levels;
        self
    }

    /// The level at which a finished test's line is shown.
    fn level_of(t: &TestFinished) -> StatusLevel {
        match t.verdict() {
            Verdict::Failure => StatusLevel::Fail,
            Verdict::NotRun => StatusLevel::Skip,
            Verdict::Success if t.flaky() => StatusLevel::Retry,
            Verdict::Success if t.leaked() => StatusLevel::Leak,
            Verdict::Success => StatusLevel::Pass,
        }
    }

    fn keep_final(&mut self, level: StatusLevel, label: String, binary_id: &str, name: &str) {
        if level <= self.levels.final_ {
            let seen = self.finals.iter().any(|(l, _, b, n)| *l == level && b == binary_id && n == name);
            if !seen {
                self.finals.push((level, label, binary_id.to_owned(), name.to_owned()));
            }
        }
    }

    fn clear_progress(&mut self) -> io::Result<()> {
        if self.progress_shown {
            write!(self.out, "\r\x1b[2K")?;
            self.progress_shown = false;
        }
        Ok(())
    }

    fn draw_progress(&mut self) -> io::Result<()> {
        if !self.progress || self.total == 0 {
            return Ok(());
        }
        let e = self.started.elapsed().as_secs();
        let line = format!(
            "{} [{:02}:{:02}:{:02}] {}/{} done, {} running {}",
            self.paint.paint(Painter::strong(), "    Running"),
            e / 3600,
            (e / 60) % 60,
            e % 60,
            self.done,
            self.total,
            self.running,
            self.last_started.chars().take(60).collect::<String>(),
        );
        write!(self.out, "\r\x1b[2K{line}")?;
        self.out.flush()?;
        self.progress_shown = true;
        Ok(())
    }

    fn label_style(&self, t: &TestFinished) -> anstyle::Style {
        match t.verdict() {
            Verdict::Success if t.flaky() => Painter::warn(),
            Verdict::Success if matches!(t.status, Status::Pass) => Painter::good(),
            Verdict::Success => Painter::warn(),
            Verdict::Failure => Painter::bad(),
            Verdict::NotRun => Painter::warn(),
        }
    }

    fn test_line(&mut self, t: &TestFinished, label: &str) -> io::Result<()> {
        let label = format!("{label:>14}");
        let label = self.paint.paint(self.label_style(t), &label);
        let peaks = match (t.scope, &t.peaks, &t.status) {
            (_, _, Status::Ignored) => String::new(),
            (PeakScope::Binary, _, _) => "(peaks: see its binary's line)".to_owned(),
            (PeakScope::Test, None, _) => String::new(),
            (PeakScope::Test, Some(p), _) if !t.settings.enforced() => {
                let rss = p.max_rss_bytes.map_or("-".to_owned(), human_bytes);
                let cpu = p.cpu_total().map_or("-".to_owned(), secs);
                format!("NO LIMITS  rss {rss:>10}  cpu {cpu:>8}")
            }
            (PeakScope::Test, Some(p), _) => {
                let mem = p.memory_bytes.map_or("-".to_owned(), |m| {
                    format!("{}{}", if m.sampled { "~" } else { "" }, human_bytes(m.value))
                });
                let pids = p
                    .pids
                    .map_or("-".to_owned(), |m| format!("{}{}", if m.sampled { "~" } else { "" }, m.value));
                let cpu = p.cpu_total().map_or("-".to_owned(), secs);
                let mut s = format!("mem {mem:>10}  pids {pids:>4}  cpu {cpu:>8}");
                if let Some(n) = p.net {
                    s.push_str(&format!(
                        "  net rx {} tx {}",
                        human_bytes(n.rx_bytes),
                        human_bytes(n.tx_bytes)
                    ));
                }
                s
            }
        };
        let peaks = match t.network {
            Some(n) if !matches!(t.status, Status::Ignored) => format!("{peaks}  net {n}"),
            _ => peaks,
        };
        let dur = if matches!(t.status, Status::Ignored) {
            "        ".to_owned()
        } else {
            format!("{:>8}", secs(t.duration))
        };
        let name = format!(
            "{} {}",
            self.paint.paint(Painter::dim(), &t.binary_id),
            self.paint.paint(Painter::strong(), &t.name)
        );
        writeln!(self.out, "{label} [{dur}] {peaks:<50} {name}")?;
        self.details(t)
    }

    /// A binary run whole in one container (`--isolation binary`): its status and peaks.
    fn binary_line(&mut self, b: &BinaryFinished) -> io::Result<()> {
        let p = b.peaks.unwrap_or_default();
        writeln!(
            self.out,
            "{:>14} [{:>8}] mem {:>10}  pids {:>4}  cpu {:>8}  {} ({} tests in one container)",
            b.status.name(),
            secs(b.duration),
            p.memory_bytes.map_or("-".to_owned(), |m| human_bytes(m.value)),
            p.pids.map_or("-".to_owned(), |m| m.value.to_string()),
            p.cpu_total().map_or("-".to_owned(), secs),
            b.binary_id,
            b.tests,
        )
    }

    fn details(&mut self, t: &TestFinished) -> io::Result<()> {
        if t.leaked() {
            writeln!(
                self.out,
                "{:>14}  still running when it ended (killed with its container): {}",
                "",
                crate::leak::describe(&t.leftover)
            )?;
        }
        if t.verdict() != Verdict::Failure {
            return Ok(());
        }
        let why = match &t.status {
            Status::Pass if t.leaked() => "it left processes running (leak = \"fail\")".to_owned(),
            Status::Pass => format!("expected {}, but it passed", t.expect.as_str()),
            Status::Fail { exit_code } => format!("exited with code {exit_code}"),
            Status::Signal { signal } => format!("killed by signal {signal} ({})", signal_name(*signal)),
            Status::Oom => format!("OOM-killed at its memory limit of {}", t.settings.limits().memory),
            Status::Timeout => match t.tries.slow_limit {
                Some(limit) => format!(
                    "killed after running for {} (--terminate-after slow periods)",
                    cvtest_spec::format_duration(limit)
                ),
                None => format!(
                    "killed after its timeout of {}",
                    t.settings.timeout().map_or("-".to_owned(), cvtest_spec::format_duration)
                ),
            },
            Status::Ignored => String::new(),
            Status::Cancelled => "cancelled: the run was stopped".to_owned(),
            Status::Error(e) => e.message(),
        };
        let mut why = why;
        if t.pids_limit_hit {
            why.push_str(&format!(
                "; the pids limit of {} was hit (a fork or thread was refused)",
                t.settings.limits().pids
            ));
        }
        writeln!(self.out, "{:>14}  {why}", "")?;
        for (what, bytes) in [("STDOUT", &t.stdout), ("STDERR", &t.stderr)] {
            if bytes.is_empty() {
                continue;
            }
            let head = format!("--- {what}: {} {} ---", t.binary_id, t.name);
            writeln!(self.out, "{}", self.paint.paint(Painter::bad(), &head))?;
            self.out.write_all(bytes)?;
            if !bytes.ends_with(b"\n") {
                writeln!(self.out)?;
            }
        }
        Ok(())
    }

    fn table(&mut self, title: &str, rows: &[Row]) -> io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        writeln!(self.out, "{}", self.paint.paint(Painter::strong(), title))?;
        let label_w = rows.iter().map(|r| r.label.len()).max().unwrap_or(0).max(6);
        writeln!(
            self.out,
            "  {:>10}  {:>5}  {:>9}  {:<label_w$}  TEST",
            "PEAK MEM", "PIDS", "DURATION", "STATUS"
        )?;
        for r in rows {
            writeln!(
                self.out,
                "  {:>10}  {:>5}  {:>9}  {:<label_w$}  {} {}",
                r.memory.map_or("-".to_owned(), human_bytes),
                r.pids.map_or("-".to_owned(), |p| p.to_string()),
                secs(r.duration),
                r.label,
                r.binary_id,
                r.name,
            )?;
        }
        Ok(())
    }

    fn final_summary(&mut self, elapsed: Duration, stats: &RunStats) -> io::Result<()> {
        let s = stats;
        let run = s.succeeded + s.failed;
        let mut head = format!("{run} tests run: {} passed", s.succeeded);
        if s.flaky > 0 {
            head.push_str(&format!(" ({} flaky)", s.flaky));
        }
        if s.failed > 0 {
            head.push_str(&format!(", {} failed", s.failed));
        }
        if s.ignored > 0 {
            head.push_str(&format!(", {} ignored", s.ignored));
        }
        if s.not_run() > 0 {
            head.push_str(&format!(", {} not run", s.not_run()));
        }
        let style = if s.success() { Painter::good() } else { Painter::bad() };
        writeln!(self.out, "────────────")?;
        writeln!(self.out, "{} [{:>9}] {head}", self.paint.paint(style, "     Summary"), secs(elapsed))?;
        let counts = self.summary.counts.clone();
        let w = counts.iter().map(|(_, l, _)| l.len()).max().unwrap_or(0);
        for (_, label, n) in &counts {
            writeln!(self.out, "  {label:>w$}  {n}")?;
        }
        let (mem, long) = (self.summary.top_memory.clone(), self.summary.longest.clone());
        self.table("Top peak memory:", &mem)?;
        self.table("Longest:", &long)?;
        let finals = std::mem::take(&mut self.finals);
        for (level, title) in [
            (StatusLevel::Fail, "Failures:"),
            (StatusLevel::Retry, "Flaky:"),
            (StatusLevel::Slow, "Slow:"),
            (StatusLevel::Leak, "Left processes running:"),
            (StatusLevel::Pass, "Passed:"),
            (StatusLevel::Skip, "Ignored:"),
        ] {
            let mut rows = finals.iter().filter(|(l, ..)| *l == level).peekable();
            if rows.peek().is_none() {
                continue;
            }
            let style = if level == StatusLevel::Fail { Painter::bad() } else { Painter::warn() };
            writeln!(self.out, "{}", self.paint.paint(style, title))?;
            for (_, label, bin, name) in rows {
                writeln!(self.out, "  {label:>14} {bin} {name}")?;
            }
        }
        // The closing line, in the plain form CI systems read.
        writeln!(
            self.out,
            "cvtest: {} passed, {} failed, {} ignored",
            s.succeeded,
            s.failed + s.not_run(),
            s.ignored
        )?;
        Ok(())
    }
}

impl<W: Write> Reporter for TerminalReporter<W> {
    fn report(&mut self, event: &Event) -> io::Result<()> {
        self.summary.add(event);
        match event {
            Event::RunStarted { to_run, ignored, filtered_out, jobs, scope, memory_budget, cpu_shares } => {
                self.total = *to_run;
                self.started = Instant::now();
                let head = self.paint.paint(Painter::good(), "    Starting");
                writeln!(
                    self.out,
                    "{head} {to_run} tests ({ignored} ignored, {filtered_out} filtered out), {jobs} at once, one container per {}, memory budget {}",
                    scope.as_str(),
                    human_bytes(*memory_budget),
                )?;
                if !cpu_shares.is_empty() {
                    writeln!(
                        self.out,
                        "             each worker's tests on its own CPUs: {} (--no-pin: anywhere)",
                        cpu_shares.join(" | ")
                    )?;
                }
            }
            Event::TestStarted { binary_id, name } => {
                self.running += 1;
                self.last_started = format!("{binary_id} {name}");
                self.draw_progress()?;
            }
            Event::TestWaiting { binary_id, name, what, holder } => {
                self.clear_progress()?;
                let holder =
                    holder.as_ref().map_or_else(|| "another cvtest container".to_owned(), |h| h.to_string());
                writeln!(
                    self.out,
                    "{:>14} [{:>8}] {:<50} {} {}",
                    self.paint.paint(Painter::warn(), "WAIT"),
                    "",
                    format!("{what}, held by {holder}"),
                    self.paint.paint(Painter::dim(), binary_id),
                    self.paint.paint(Painter::strong(), name)
                )?;
                self.draw_progress()?;
            }
            Event::TestSlow { binary_id, name, elapsed, terminating } => {
                self.keep_final(StatusLevel::Slow, "SLOW".to_owned(), binary_id, name);
                if StatusLevel::Slow <= self.levels.live {
                    self.clear_progress()?;
                    let note = if *terminating { "  (ended as TIMEOUT at the next period)" } else { "" };
                    writeln!(
                        self.out,
                        "{:>14} [{:>8}] {:<50} {} {}",
                        self.paint.paint(Painter::warn(), "SLOW"),
                        secs(*elapsed),
                        note,
                        self.paint.paint(Painter::dim(), binary_id),
                        self.paint.paint(Painter::strong(), name)
                    )?;
                    self.draw_progress()?;
                }
            }
            Event::AttemptFailed(t) => {
                if StatusLevel::Retry <= self.levels.live {
                    self.clear_progress()?;
                    let label = format!("TRY {} {}", t.attempt(), t.status.name());
                    self.test_line(t, &label)?;
                    self.draw_progress()?;
                }
            }
            Event::TestFinished(t) => {
                self.clear_progress()?;
                if !matches!(t.status, Status::Ignored) {
                    if t.scope == PeakScope::Test {
                        self.running = self.running.saturating_sub(1);
                    }
                    self.done += 1;
                }
                let level = Self::level_of(t);
                self.keep_final(level, t.label(), &t.binary_id, &t.name);
                if level <= self.levels.live {
                    self.test_line(t, &t.label())?;
                }
                self.draw_progress()?;
            }
            Event::BinaryFinished(b) => {
                self.clear_progress()?;
                self.binary_line(b)?;
                self.draw_progress()?;
            }
            Event::Interrupted { signal } => {
                self.clear_progress()?;
                writeln!(
                    self.out,
                    "{} by signal {signal} ({}): starting no more tests, killing the running ones",
                    self.paint.paint(Painter::bad(), " Interrupted"),
                    signal_name(*signal)
                )?;
            }
            Event::Stopping => {
                self.clear_progress()?;
                writeln!(
                    self.out,
                    "{} after a failure (--fail-fast)",
                    self.paint.paint(Painter::bad(), "    Stopping")
                )?;
            }
            Event::Warning { message } => {
                self.clear_progress()?;
                writeln!(self.out, "{} {message}", self.paint.paint(Painter::warn(), "     Warning"))?;
                self.draw_progress()?;
            }
            Event::RunFinished { elapsed, stats } => {
                self.clear_progress()?;
                self.final_summary(*elapsed, stats)?;
            }
        }
        self.out.flush()
    }

    fn tick(&mut self) -> io::Result<()> {
        self.draw_progress()
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTRAP => "SIGTRAP",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_shows_the_holder() {
        let mut r = TerminalReporter::new(Vec::new(), Painter { on: false }, false, 5);
        let holder = cvtest::lease::Holder::new(4242, Some("crate::net peer".into()), "10.0.0.0/16".into());
        r.report(&Event::TestWaiting {
            binary_id: "crate".into(),
            name: "net::client".into(),
            what: "10.0.0.0/24".into(),
            holder: Some(holder),
        })
        .unwrap();
        let out = String::from_utf8(r.out).unwrap();
        assert!(out.trim_start().starts_with("WAIT"), "{out}");
        assert!(out.contains("10.0.0.0/24, held by pid 4242 (test crate::net peer)"), "{out}");
        assert!(out.contains("crate net::client"), "{out}");
    }

    #[test]
    fn status_levels_filter_lines_live_and_at_the_end() {
        let levels = StatusLevels { live: StatusLevel::Fail, final_: StatusLevel::Retry };
        let mut r = TerminalReporter::new(Vec::new(), Painter { on: false }, false, 0).with_levels(levels);
        r.report(&Event::TestFinished(Box::new(TestFinished::sample(Status::Pass)))).unwrap();
        let mut flaky = TestFinished::sample(Status::Pass);
        flaky.tries.earlier.push(crate::events::Attempt::of(&TestFinished::sample(Status::Oom)));
        r.report(&Event::TestFinished(Box::new(flaky))).unwrap();
        r.report(&Event::TestFinished(Box::new(TestFinished::sample(Status::Timeout)))).unwrap();
        let out = String::from_utf8(std::mem::take(&mut r.out)).unwrap();
        assert!(!out.contains("PASS") && !out.contains("FLAKY"), "{out}");
        assert!(out.trim_start().starts_with("TIMEOUT"), "{out}");
        r.report(&Event::RunFinished { elapsed: Duration::ZERO, stats: RunStats::default() }).unwrap();
        let out = String::from_utf8(r.out).unwrap();
        assert!(
            out.contains("Failures:\n         TIMEOUT p t") && out.contains("Flaky:\n           FLAKY p t"),
            "{out}"
        );
        assert!(!out.contains("Passed:"), "{out}");
    }
}
