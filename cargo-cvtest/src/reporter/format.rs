//! Number formatting and colours.

use std::time::Duration;

use anstyle::{AnsiColor, Style};

/// Paints text when colours are on (the CLI decides: `--color`, `CARGO_TERM_COLOR`, `NO_COLOR`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Painter {
    pub(crate) on: bool,
}

impl Painter {
    pub(crate) fn paint(&self, style: Style, text: &str) -> String {
        if self.on {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    pub(crate) fn good() -> Style {
        AnsiColor::Green.on_default().bold()
    }
    pub(crate) fn bad() -> Style {
        AnsiColor::Red.on_default().bold()
    }
    pub(crate) fn warn() -> Style {
        AnsiColor::Yellow.on_default().bold()
    }
    pub(crate) fn dim() -> Style {
        Style::new().dimmed()
    }
    pub(crate) fn strong() -> Style {
        Style::new().bold()
    }
}

/// `512 B`, `12.3 KiB`, `1.5 GiB`.
pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1.234s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }

    #[test]
    fn painter_off_is_plain() {
        assert_eq!(Painter { on: false }.paint(Painter::bad(), "FAIL"), "FAIL");
        assert!(Painter { on: true }.paint(Painter::bad(), "FAIL").contains("\x1b["));
    }
}
