//! The human reporter, on stderr: a line per finished test, the output of failing tests, a
//! progress line on a terminal, and the final summary with its tables.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::events::{Event, PeakScope, Status, TestFinished, Verdict};
use crate::reporter::format::{human_bytes, secs, Painter};
use crate::reporter::summary::{Row, RunSummary};
use crate::reporter::Reporter;

pub struct TerminalReporter<W: Write> {
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
}

impl TerminalReporter<io::Stderr> {
    pub fn stderr(paint: Painter, top: usize) -> Self {
        let progress = io::stderr().is_terminal();
        TerminalReporter::new(io::stderr(), paint, progress, top)
    }
}

impl<W: Write> TerminalReporter<W> {
    pub fn new(out: W, paint: Painter, progress: bool, top: usize) -> Self {
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
        }
    }

    pub fn summary(&self) -> &RunSummary {
        &self.summary
    }

    pub fn into_inner(self) -> W {
        self.out
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
            Verdict::Success if t.status == Status::Pass => Painter::good(),
            Verdict::Success => Painter::warn(),
            Verdict::Failure => Painter::bad(),
            Verdict::NotRun => Painter::warn(),
        }
    }

    fn test_line(&mut self, t: &TestFinished) -> io::Result<()> {
        let label = format!("{:>14}", t.label());
        let label = self.paint.paint(self.label_style(t), &label);
        let peaks = match (t.scope, &t.peaks, &t.status) {
            (_, _, Status::Ignored) => String::new(),
            (PeakScope::Binary, _, _) => "(peaks: see its binary's line)".to_owned(),
            (PeakScope::Test, None, _) => String::new(),
            (PeakScope::Test, Some(p), _) if !t.settings.enforced => {
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
        let dur = if t.status == Status::Ignored {
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

    fn details(&mut self, t: &TestFinished) -> io::Result<()> {
        if t.verdict() != Verdict::Failure {
            return Ok(());
        }
        let why = match &t.status {
            Status::Pass => format!("expected {}, but it passed", t.expect.as_str()),
            Status::Fail { exit_code } => format!("exited with code {exit_code}"),
            Status::Signal { signal } => format!("killed by signal {signal} ({})", signal_name(*signal)),
            Status::Oom => format!("OOM-killed at its memory limit of {}", t.settings.memory),
            Status::Timeout => format!(
                "killed after its timeout of {}",
                t.settings.timeout.map_or("-".to_owned(), cvtest_spec::format_duration)
            ),
            Status::Ignored => String::new(),
            Status::Cancelled => "cancelled: the run was stopped".to_owned(),
            Status::SetupError { message } => message.clone(),
        };
        let mut why = why;
        if t.pids_limit_hit {
            why.push_str(&format!(
                "; the pids limit of {} was hit (a fork or thread was refused)",
                t.settings.pids
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

    fn final_summary(&mut self, elapsed: Duration) -> io::Result<()> {
        let s = &self.summary;
        let run = s.succeeded + s.failed;
        let mut head = format!("{run} tests run: {} passed", s.succeeded);
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
        let counts = s.counts.clone();
        let w = counts.iter().map(|(_, l, _)| l.len()).max().unwrap_or(0);
        for (_, label, n) in &counts {
            writeln!(self.out, "  {label:>w$}  {n}")?;
        }
        let (mem, long) = (s.top_memory.clone(), s.longest.clone());
        self.table("Top peak memory:", &mem)?;
        self.table("Longest:", &long)?;
        let failures = self.summary.failures.clone();
        if !failures.is_empty() {
            writeln!(self.out, "{}", self.paint.paint(Painter::bad(), "Failures:"))?;
            for (label, bin, name) in failures {
                writeln!(self.out, "  {label:>14} {bin} {name}")?;
            }
        }
        let s = &self.summary;
        // The closing line, in the plain form CI systems read.
        writeln!(
            self.out,
            "cvtest: {} passed, {} failed, {} skipped",
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
            Event::RunStarted { to_run, ignored, filtered_out, jobs, isolation, memory_budget } => {
                self.total = *to_run;
                self.started = Instant::now();
                writeln!(
                    self.out,
                    "{} {to_run} tests ({ignored} ignored, {filtered_out} filtered out), {jobs} at once, one container per {}, memory budget {}",
                    self.paint.paint(Painter::good(), "    Starting"),
                    match isolation {
                        crate::cli::Isolation::Test => "test",
                        crate::cli::Isolation::Binary => "binary",
                    },
                    human_bytes(*memory_budget),
                )?;
            }
            Event::TestStarted { binary_id, name } => {
                self.running += 1;
                self.last_started = format!("{binary_id} {name}");
                self.draw_progress()?;
            }
            Event::TestFinished(t) => {
                self.clear_progress()?;
                if t.status != Status::Ignored {
                    if t.scope == PeakScope::Test {
                        self.running = self.running.saturating_sub(1);
                    }
                    self.done += 1;
                }
                self.test_line(t)?;
                self.draw_progress()?;
            }
            Event::BinaryFinished(b) => {
                self.clear_progress()?;
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
                )?;
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
            Event::RunFinished { elapsed } => {
                self.clear_progress()?;
                self.final_summary(*elapsed)?;
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
