//! Reporters turn events into output; they never run anything.

mod format;
mod html;
mod json;
mod junit;
mod summary;
mod terminal;

use std::path::PathBuf;

pub(crate) use format::{human_bytes, Painter};
pub(crate) use html::HtmlReporter;
pub(crate) use json::{list_json_line, JsonReporter};
pub(crate) use junit::JunitReporter;
pub(crate) use terminal::TerminalReporter;

use crate::events::Event;
use crate::policy::StatusLevels;

/// How results are shown.
#[derive(Debug, Clone)]
pub(crate) struct ReportOptions {
    pub(crate) paint: Painter,
    /// What goes to stdout besides the human report on stderr.
    pub(crate) format: OutputFormat,
    /// Where to write a JUnit XML report.
    pub(crate) junit: Option<PathBuf>,
    /// Where to write the HTML report.
    pub(crate) html: Option<PathBuf>,
    /// Rows in the summary's top tables.
    pub(crate) top: usize,
    /// What the terminal shows live and at the end.
    pub(crate) levels: StatusLevels,
}

/// The format of stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    Human,
    /// JSON lines (schema: cargo-cvtest/README.md).
    Json,
}

/// The reporters of a run: the terminal one on stderr, then JSON on stdout and JUnit as asked.
pub(crate) fn for_run(opts: &ReportOptions) -> Vec<Box<dyn Reporter>> {
    let mut reporters: Vec<Box<dyn Reporter>> =
        vec![Box::new(TerminalReporter::stderr(opts.paint, opts.top).with_levels(opts.levels))];
    if opts.format == OutputFormat::Json {
        reporters.push(Box::new(JsonReporter::new(std::io::stdout())));
    }
    if let Some(path) = &opts.junit {
        reporters.push(Box::new(JunitReporter::new(path.clone())));
    }
    if let Some(path) = &opts.html {
        reporters.push(Box::new(HtmlReporter::new(path.clone())));
    }
    reporters
}

/// Something that consumes events.
pub(crate) trait Reporter {
    fn report(&mut self, event: &Event) -> std::io::Result<()>;
    /// Called periodically while tests run (progress redraw).
    fn tick(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
