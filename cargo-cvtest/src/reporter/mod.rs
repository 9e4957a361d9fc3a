//! Reporters turn events into output; they never run anything.

mod format;
mod json;
mod junit;
mod summary;
mod terminal;

pub use format::{human_bytes, Painter};
pub use json::{list_json_line, JsonReporter};
pub use junit::JunitReporter;
pub use summary::{Row, RunSummary};
pub use terminal::TerminalReporter;

use crate::events::Event;

/// Something that consumes events.
pub trait Reporter {
    fn report(&mut self, event: &Event) -> std::io::Result<()>;
    /// Called periodically while tests run (progress redraw).
    fn tick(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
